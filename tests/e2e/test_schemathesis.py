"""Schemathesis against both OpenAPI documents of a live platform, authenticated as the
admin: the control plane's and a deployed model's (through its stable URL). Whatever it
sends, nothing answers 5xx."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane import log_echo_versions
from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.governance.tokens import read_token_file

from .conftest import free_port

pytestmark = pytest.mark.slow
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``greenbutton up`` with endpoint auth on and the echo model deployed; (url, token)."""
    home = tmp_path_factory.mktemp("fuzz") / "gb"
    home.mkdir()
    settings = Settings(home=home, server={"port": free_port()},  # type: ignore[arg-type]
                        controller={"poll_interval_s": 0.5},  # type: ignore[arg-type]
                        auth={"is_endpoint_auth_enabled": True},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    log = home / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                   env={**os.environ, **settings.environ()}, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = settings.server.url
    try:
        token = _wait_for_token(home, process, log)
        log_echo_versions(settings, [{}])
        with ControlPlaneClient(url, token=token, timeout_s=120) as client:
            client.transition("echo", 1, "Production", actor="fuzz")
            _wait_ready(client, log)
        yield url, token
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _wait_for_token(home: Path, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        token = read_token_file(home)
        if token:
            return token
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(log.read_text())


def _wait_ready(client: ControlPlaneClient, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if any(d["state"] == "ready" for d in client.deployments()):
            return
        time.sleep(0.3)
    raise AssertionError(log.read_text())


def fuzz(schema: str, token: str, workdir: Path, *extra: str) -> None:
    """Every phase, 0 x 5xx: the coverage phase on one worker (schemathesis's own lambda
    cache is not thread-safe there), examples and fuzzing on four."""
    common = [str(SCHEMATHESIS), "run", schema, "-H", f"Authorization: Bearer {token}",
              "--checks", "not_a_server_error", "--seed", "1", "--no-color",
              "--generation-database", "none", *extra]
    for phase, workers, examples in (("coverage", "1", "25"), ("examples,fuzzing", "4", "40")):
        done = subprocess.run([*common, "--phases", phase, "--workers", workers,
                               "--max-examples", examples], capture_output=True, text=True,
                              timeout=600, cwd=workdir)  # its cache lands there, not here
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_control_plane_answers_no_5xx(live: tuple[str, str], tmp_path: Path) -> None:
    url, token = live
    fuzz(f"{url}/openapi.json", token, tmp_path)


def test_served_model_answers_no_5xx(live: tuple[str, str], tmp_path: Path) -> None:
    url, token = live
    fuzz(f"{url}/endpoints/echo/openapi.json", token, tmp_path, "--url", f"{url}/endpoints/echo")
