"""``greenbutton promote``: move a version, then follow the controller until it serves.

Progress goes to stdout as it happens: the gates (run by the server while the request is
open), the transition, then each new state of the deployment (``starting v2: 0/1 ready``),
and the stable URL once the version takes traffic. The command never gives up while the
server is working: the transition request may take as long as the gates' own budget
(``auth.gate_timeout_s``), and readiness is polled, not awaited in one long request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..client import ControlPlaneClient, ControlPlaneUnreachable

POLL_S = 0.25
NO_DEPLOYMENT_S = 15.0
"""Seconds without any deployment serving the model before the command stops waiting
(e.g. a Staging version that no spec routes)."""
UNREACHABLE_S = 30.0
"""Seconds the control plane may not answer (restarting) before the command stops waiting."""

Report = Callable[[str], None]


def follow_rollout(client: ControlPlaneClient, model: str, version: int,
                   report: Report = print) -> int:
    """Poll until a deployment of ``model`` routes traffic to ``version`` (0, its URL said),
    fails or crash-loops (1, the reason said), or none serves the model (0)."""
    said, last_seen = "", time.monotonic()
    started = time.monotonic()
    while True:
        try:
            mine = [d for d in client.deployments() if d["model"] == model]
            last_seen = time.monotonic()
        except ControlPlaneUnreachable:
            if time.monotonic() - last_seen > UNREACHABLE_S:
                report("the control plane stopped answering; `greenbutton status` tells more")
                return 1
            time.sleep(POLL_S)
            continue
        wanted = [d for d in mine if d["version"] == version]
        if not wanted and time.monotonic() - started > NO_DEPLOYMENT_S:
            report(f"no deployment serves {model} v{version} (a spec may route other stages)")
            return 0
        for deployment in wanted:
            line = f"{deployment['name']}: {deployment.get('summary') or deployment['state']}"
            if line != said:
                report(line)
                said = line
            if _is_serving(deployment, version):
                report(f"ready: {deployment['url']}")
                return 0
            if deployment["state"] == "failed" or deployment.get("is_crash_looping"):
                report("the controller keeps retrying with backoff; `greenbutton status` "
                       "shows its progress")
                return 1
        time.sleep(POLL_S)


def _is_serving(deployment: dict[str, Any], version: int) -> bool:
    return deployment["state"] == "ready" and any(
        t["version"] == version and t["weight"] > 0 for t in deployment.get("traffic", ()))
