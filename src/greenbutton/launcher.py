"""Start or reuse a local platform from a script (the demos, a notebook) and wait for a rollout.

Usage::

    platform = ensure_platform(settings)          # None when one already answers
    try:
        ...promote...
        url = wait_until_serving(client, "digits", 3, timeout_s=90)
    finally:
        stop_platform(platform)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from .client import ControlPlaneClient, ControlPlaneUnreachable
from .config import Settings
from .errors import NotReady

Report = Callable[[str], None]


def ensure_platform(settings: Settings, *, start_timeout_s: float = 60.0,
                    report: Report = print) -> subprocess.Popen[bytes] | None:
    """Start ``greenbutton up`` unless a control plane already answers at ``server.url``.

    Returns the started process (stop it with :func:`stop_platform`), or None when an already
    running control plane is reused. Its output goes to ``<home>/logs/control-plane.log``.
    """
    with ControlPlaneClient(settings.server.url, timeout_s=2) as client:
        if _answers(client):
            report(f"using the control plane already running at {settings.server.url}")
            return None
        logs = settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = logs / "control-plane.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                       env={**os.environ, **settings.environ()},
                                       stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise NotReady(f"greenbutton up exited with {process.returncode}; see {log_path}")
            if _answers(client):
                report(f"control plane up at {settings.server.url} (log: {log_path})")
                return process
            time.sleep(0.2)
        stop_platform(process)
        raise NotReady(f"control plane did not answer within {start_timeout_s:.0f} s; "
                       f"see {log_path}")


def wait_until_serving(client: ControlPlaneClient, name: str, version: int,
                       timeout_s: float) -> str:
    """Poll the controller until deployment ``name`` is ready on ``version``; its stable URL."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for deployment in client.deployments():
            if (deployment["name"] == name and deployment["state"] == "ready"
                    and deployment["serving_version"] == version):
                return str(deployment["url"])
        time.sleep(0.25)
    raise NotReady(f"{name} v{version} was not deployed within {timeout_s:.0f} s; "
                   "run `greenbutton status` for the reason")


def stop_platform(process: subprocess.Popen[bytes] | None, *, timeout_s: float = 60.0) -> None:
    """SIGTERM a control plane started by :func:`ensure_platform` (it drains its serving
    processes) and wait for it; SIGKILL after ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers(client: ControlPlaneClient) -> bool:
    try:
        client.health()
    except ControlPlaneUnreachable:
        return False
    return True
