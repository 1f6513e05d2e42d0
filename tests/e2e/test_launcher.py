"""greenbutton.launcher: start (or reuse) a local platform and wait for a rollout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.controller.home_claim import running_control_plane
from greenbutton.errors import NotReady
from greenbutton.governance.tokens import read_token_file
from greenbutton.launcher import ensure_platform, stop_platform, wait_until_serving

from .conftest import free_port

pytestmark = pytest.mark.slow


def test_ensure_platform_starts_then_reuses_then_stops(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "gb", server={"port": free_port()},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    said: list[str] = []
    process = ensure_platform(settings, report=said.append)
    try:
        assert process is not None and process.poll() is None
        assert ensure_platform(settings, report=said.append) is None  # reused, not started twice
        with ControlPlaneClient(settings.server.url,
                                token=read_token_file(settings.home)) as client:
            with pytest.raises(NotReady):
                wait_until_serving(client, "nothing", 1, timeout_s=0.5)
    finally:
        stop_platform(process)
    assert process.returncode is not None
    assert len(said) == 2 and "using the control plane already running" in said[1]


def test_ensure_platform_waits_for_an_up_starting_on_the_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "gb", server={"port": free_port()},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    first = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                             env={**os.environ, **settings.environ()},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while running_control_plane(settings.home) is None:  # it holds the home, not answering
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        said: list[str] = []
        assert ensure_platform(settings, report=said.append) is None  # nothing started
        assert said[0].startswith(f"waiting for the greenbutton up (pid {first.pid})")
        assert "using the control plane already running" in said[-1]
    finally:
        stop_platform(first)
