"""greenbutton.launcher: start (or reuse) a local platform and wait for a rollout."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
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
