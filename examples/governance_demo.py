"""Governance in a regulated team, end to end, in one command.

A data scientist proposes a digits classifier whose held-out accuracy is below its gate: the
proposal is blocked with the reason. A good version passes its gates; the proposer cannot
approve it (four-eyes), a reviewer does, and the controller deploys it. The shop's service
account may invoke the endpoint; another account gets 403, an anonymous caller 401. The audit
log's hash chain is verified at the end.

    python examples/governance_demo.py [--exit]

Runs its own platform in ``.greenbutton-governance`` on port 8610 with endpoint auth on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings
from greenbutton.errors import GreenbuttonError
from greenbutton.governance.client import GovernanceClient
from greenbutton.governance.tokens import read_token_file
from greenbutton.launcher import ensure_platform, stop_platform, wait_until_serving

MODEL = "digits-governed"
GATES = [{"kind": "metric", "metric": "accuracy", "min": 0.9},
         {"kind": "latency", "p95_ms": 200, "calls": 20}]


class Digits(greenbutton.Model):
    """The data scientist's class, with one model unit test of their own."""

    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.clf.predict(model_input)

    @greenbutton.model.model_test
    def answers_every_row(self, context: Any) -> None:
        blank = pd.DataFrame([[0.0] * 64], columns=[f"pixel_{i}" for i in range(64)])
        assert len(self.predict(context, blank)) == 1


def step(message: str) -> None:
    print(f"[governance] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit", action="store_true", help="stop the platform at the end")
    parser.add_argument("--timeout", type=float, default=120.0, help="deployment wait (s)")
    args = parser.parse_args()
    home = Path(os.environ.get("GREENBUTTON_HOME", ".greenbutton-governance")).resolve()
    port = int(os.environ.get("GREENBUTTON_SERVER__PORT", "8610"))
    settings = Settings(home=home, server={"port": port},  # type: ignore[arg-type]
                        auth={"is_endpoint_auth_enabled": True, "is_four_eyes_default": True},
                        _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    platform = ensure_platform(settings, report=step)
    try:
        run(settings, args.timeout)
        if not args.exit and platform is not None:
            step("platform keeps running; Ctrl-C stops it")
            platform.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_platform(platform)
    return 0


def run(settings: Settings, timeout_s: float) -> None:
    url = settings.server.url or ""
    admin = GovernanceClient(url, token=read_token_file(settings.home), timeout_s=120)
    tokens = {}
    for name, role in (("dana", "data-scientist"), ("rob", "maintainer"), ("shop", "viewer"),
                       ("intruder", "viewer")):
        if name not in {p["name"] for p in admin.principals()}:
            admin.create_principal(name, role, "service" if name in ("shop", "intruder")
                                   else "user")
        tokens[name] = admin.create_token(name, "governance demo")["token"]
    admin.grant("shop", MODEL, "invoke")
    admin.grant("dana", MODEL, "approve")  # so four-eyes, not a missing right, stops her
    step("users: dana (data scientist), rob (maintainer, reviewer); services: shop "
         "(invoke granted), intruder (no invoke)")

    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    held_out = (X.iloc[1400:], y.iloc[1400:])
    versions = []
    for rows, label in ((25, "under-trained"), (1400, "well-trained")):
        clf = LogisticRegression(max_iter=500).fit(X.iloc[:rows], y.iloc[:rows])
        logged = greenbutton.log_model(Digits(clf), MODEL, reference_data=X.iloc[:300],
                                       settings=settings, held_out=held_out, gates=GATES,
                                       pip_requirements=["scikit-learn", "pandas"])
        versions.append(logged.version)
        step(f"dana logged {label} {MODEL} v{logged.version} with gates {GATES}")

    dana = GovernanceClient(url, token=tokens["dana"], timeout_s=300)
    rob = GovernanceClient(url, token=tokens["rob"], timeout_s=300)
    blocked = dana.propose(MODEL, versions[0], reason="first try")
    failed = [g for g in blocked["gates"] if not g["is_passed"]]
    step(f"proposal #{blocked['id']} of v{versions[0]} is {blocked['status'].upper()}: "
         + "; ".join(f"{g['gate']}: {g['detail'].get('reason')}" for g in failed))
    try:
        rob.decide(blocked["id"], "approve")
    except GreenbuttonError as error:
        step(f"rob cannot approve it: {error.message}")

    good = dana.propose(MODEL, versions[1], reason="accuracy above the gate")
    step(f"proposal #{good['id']} of v{versions[1]}: {good['status']}, gates "
         + ", ".join(f"{g['gate']}={'pass' if g['is_passed'] else 'FAIL'}"
                     for g in good["gates"]))
    try:
        dana.decide(good["id"], "approve")
    except GreenbuttonError as error:
        step(f"dana cannot approve her own proposal (four-eyes): {error.message}")
    rob.decide(good["id"], "approve", reason="reviewed gate results")
    step(f"rob approved #{good['id']}: v{versions[1]} -> Production")
    endpoint = wait_until_serving(admin, MODEL, versions[1], timeout_s)
    step(f"controller deployed v{versions[1]} at {endpoint}")

    row = {"inputs": X.iloc[[1500]].to_dict(orient="records")}
    for who in ("shop", "intruder", None):
        headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
        answer = httpx.post(f"{endpoint}predict", json=row, headers=headers, timeout=30)
        step(f"{who or 'anonymous'} calls {endpoint}predict -> {answer.status_code}")

    report = admin.audit_verify()
    step(f"audit chain intact={report['is_intact']} over {report['checked']} entries; "
         "who approved what:")
    for entry in admin.audit():
        if entry["action"] in ("request.propose", "gates.run", "request.approve",
                               "lifecycle.transition") and MODEL in entry["target"]:
            print(f"    #{entry['seq']} {entry['at'][:19]} {entry['actor']:<12} "
                  f"{entry['action']:<22} {entry['target']}")


if __name__ == "__main__":
    sys.exit(main())
