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
from pathlib import Path

from .client import ControlPlaneClient, ControlPlaneUnreachable
from .config import Settings
from .controller.home_claim import ControlPlaneRunning, running_control_plane
from .errors import NotReady

Report = Callable[[str], None]


def ensure_platform(settings: Settings, *, start_timeout_s: float = 60.0,
                    report: Report = print) -> subprocess.Popen[bytes] | None:
    """Start ``greenbutton up`` unless a control plane already answers at ``server.url``.

    Returns the started process (stop it with :func:`stop_platform`), or None when an already
    running control plane is reused (one still starting on the home is waited for). Its
    output goes to ``<home>/logs/control-plane.log``.
    """
    with ControlPlaneClient(settings.server.url, timeout_s=2) as client:
        if _answers(client):
            report(f"using the control plane already running at {settings.server.url}")
            return None
        log_path = settings.home / "logs" / "control-plane.log"
        deadline = time.monotonic() + start_timeout_s
        process = None if _starting(settings, report) else _start(settings, log_path)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                if not _starting(settings, report):  # it did not lose the home to another
                    raise NotReady(f"greenbutton up exited with {process.returncode}; "
                                   f"see {log_path}")
                process = None
            if _answers(client):
                if process is None:
                    report(f"using the control plane already running at {settings.server.url}")
                else:
                    report(f"control plane up at {settings.server.url} (log: {log_path})")
                return process
            time.sleep(0.2)
        stop_platform(process)
        raise NotReady(f"control plane did not answer within {start_timeout_s:.0f} s; "
                       f"see {log_path}")


def _start(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                env={**os.environ, **settings.environ()},
                                stdout=log, stderr=subprocess.STDOUT)


def _starting(settings: Settings, report: Report) -> bool:
    """Whether another ``greenbutton up`` holds the home (it is starting: it did not answer);
    one listening elsewhere than ``server.url`` is an error."""
    running = running_control_plane(settings.home)
    if running is None:
        return False
    if running.url != settings.server.url:
        raise ControlPlaneRunning(settings.home, running)
    report(f"waiting for the greenbutton up (pid {running.pid}) starting on {settings.home}")
    return True


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
