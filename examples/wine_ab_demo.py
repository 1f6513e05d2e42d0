"""Scenario 2, wine A/B with feedback: two ElasticNet regressors behind one URL, 80 % / 20 %.

    .venv/bin/python examples/wine_ab_demo.py            # keeps the platform running
    .venv/bin/python examples/wine_ab_demo.py --exit     # stop everything at the end (tests)

Data: scikit-learn bundles no wine-*quality* data (``load_wine`` has 13 chemical measurements
and a cultivar class), so the regression target is one of the measured columns, the alcohol
content (% vol), predicted from the other 12. It is a real measurement, not a formula of the
features, so the two models genuinely differ in error. (``load_diabetes`` would also do; it
would not be wine.) Model A: ElasticNet(alpha=0.01); model B: ElasticNet(alpha=1.0).

The demo starts ``greenbutton up`` (unless one answers), logs both, puts A in Production and B
in Staging, deploys ``wine`` with ``production=80, challenger=20``, then a client loop predicts
each held-out row through the stable URL and sends ``POST /feedback`` with the reward
(negative squared error). Every feedback answer names the version the *server* joined it to;
the table shows the per-version mean reward, which is also the Prometheus series
``greenbutton_feedback_mean_reward{model="wine",version=...}`` on ``/metrics``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import greenbutton
from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.launcher import ensure_platform, stop_platform

TARGET = "alcohol"


def regressor(pipeline: Any) -> greenbutton.Model:
    """What a data scientist writes: one class with a predict method."""

    class WineRegressor(greenbutton.Model):
        def __init__(self, pipeline: Any) -> None:
            self.pipeline = pipeline

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.pipeline.predict(model_input)

    return WineRegressor(pipeline)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit", action="store_true", help="stop the platform at the end")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the held-out rows")
    parser.add_argument("--timeout", type=float, default=120.0, help="deployment wait (s)")
    args = parser.parse_args()
    settings = Settings()
    platform = ensure_platform(settings, report=step)
    try:
        run(settings, args)
        if not args.exit and platform is not None:
            print("\nThe platform keeps running; press Ctrl-C to stop it.")
            platform.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if platform is not None:
            stop_platform(platform)
    return 0


def run(settings: Settings, args: argparse.Namespace) -> None:
    """Train, log, stage, deploy 80/20, send predictions and feedback, print the outcome."""
    frame = load_wine(as_frame=True).frame.drop(columns="target")
    X, y = frame.drop(columns=TARGET), frame[TARGET]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
    versions = {}
    for label, alpha in (("A", 0.01), ("B", 1.0)):
        pipeline = make_pipeline(StandardScaler(), ElasticNet(alpha=alpha)).fit(X_train, y_train)
        logged = greenbutton.log_model(regressor(pipeline), "wine", reference_data=X_train,
                                       reference_targets=y_train, settings=settings,
                                       params={"alpha": alpha},
                                       pip_requirements=["scikit-learn", "pandas"])
        versions[label] = logged.version
        step(f"logged model {label} (alpha={alpha}) as wine v{logged.version}")
    actor = getpass.getuser()
    with ControlPlaneClient(settings.server.url or "", token=_token(settings)) as client:
        client.transition("wine", versions["A"], "Production", actor=actor, reason="A/B: A")
        client.transition("wine", versions["B"], "Staging", actor=actor, reason="A/B: B")
        spec = {"model": "wine", "routes": [{"to": "production", "weight": 80},
                                            {"to": "challenger", "weight": 20}]}
        client.put_spec("wine", spec, actor=actor)
        step("deployed wine: production=80 challenger=20 "
             "(= greenbutton deploy wine --route production=80 --route challenger=20)")
        url = wait_for_split(client, "wine", set(versions.values()), args.timeout)
    step(f"both versions ready behind {url}")
    rewards = send_traffic(url, X_test, y_test, args.rounds, _token(settings))
    print_outcome(rewards, versions)


def send_traffic(url: str, X: pd.DataFrame, y: pd.Series, rounds: int,
                 token: str | None) -> dict[str, list[float]]:
    """Predict each row, then send its reward; per server-joined version, the rewards."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    rewards: dict[str, list[float]] = defaultdict(list)
    with httpx.Client(timeout=30, headers=headers) as http:
        for _ in range(rounds):
            for (_, row), truth in zip(X.iterrows(), y, strict=True):
                answer = http.post(f"{url}predict", json={"inputs": [row.to_dict()]})
                answer.raise_for_status()
                body = answer.json()
                reward = -(float(body["predictions"][0]) - float(truth)) ** 2
                feedback = http.post(f"{url}feedback", json={"request_id": body["request_id"],
                                                            "reward": reward})
                feedback.raise_for_status()
                joined = feedback.json()
                rewards[str(joined["model"]["version"])].append(float(joined["reward"]))
    return rewards


def print_outcome(rewards: dict[str, list[float]], versions: dict[str, int]) -> None:
    label_of = {str(v): k for k, v in versions.items()}
    total = sum(len(r) for r in rewards.values())
    print("\nversion  model  share   feedbacks  mean reward (-squared error)")
    for version in sorted(rewards, key=int):
        got = rewards[version]
        print(f"v{version:<7} {label_of.get(version, '?'):<6} {len(got) / total:6.1%} "
              f"{len(got):>10}  {sum(got) / len(got):12.4f}")
    best = max(rewards, key=lambda v: sum(rewards[v]) / len(rewards[v]))
    step(f"v{best} (model {label_of.get(best, '?')}) wins; promote it with "
         f"`greenbutton promote wine {best}` and archive the other")


def wait_for_split(client: ControlPlaneClient, name: str, versions: set[int],
                   timeout_s: float) -> str:
    """Poll the controller until ``name`` routes to every version in ``versions``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in client.deployments():
            routed = {t["version"] for t in d.get("traffic", ()) if t["weight"] > 0}
            if d["name"] == name and d["state"] == "ready" and routed == versions:
                return str(d["url"])
        time.sleep(0.25)
    raise SystemExit(f"{name} did not route to {sorted(versions)} within {timeout_s:.0f} s; "
                     "run `greenbutton status` for the reason")


def _token(settings: Settings) -> str | None:
    token_file = settings.home / "admin.token"
    return settings.token or (token_file.read_text().strip() if token_file.exists() else None)


def step(message: str) -> None:
    print(f"[greenbutton] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
