"""``SubprocessGateRunner``: runs a version's gates in a fresh ``gates.worker`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..config import Settings
from ..store.governance_records import GateOutcome

_TAIL = 2000


class SubprocessGateRunner:
    """One worker process per proposal; argv list, no shell, bounded by a timeout.

    Usage::

        SubprocessGateRunner(settings).run("digits", 5)  # -> [GateOutcome(...), ...]
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def run(self, model: str, version: int) -> list[GateOutcome]:
        """Every gate's outcome; a crashed or timed-out worker is one failed ``worker`` gate."""
        job = json.dumps({"model": model, "version": version})
        env = {**os.environ, **self._settings.environ()}
        env.pop("GREENBUTTON_TOKEN", None)  # the worker needs no credentials
        try:
            done = subprocess.run(
                [sys.executable, "-m", "greenbutton.gates.worker"], input=job, env=env,
                capture_output=True, text=True, timeout=self._settings.auth.gate_timeout_s,
                check=False)
        except subprocess.TimeoutExpired:
            budget = self._settings.auth.gate_timeout_s
            return [GateOutcome("worker", False, {"reason": f"gates took over {budget} s"})]
        try:
            results = json.loads(done.stdout)
            return [GateOutcome(r["gate"], bool(r["is_passed"]), dict(r["detail"]))
                    for r in results]
        except (ValueError, KeyError, TypeError):
            reason = f"gate worker exited {done.returncode}: {done.stderr[-_TAIL:]}"
            return [GateOutcome("worker", False, {"reason": reason})]
