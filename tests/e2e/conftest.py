"""A real platform for end-to-end tests: `greenbutton up` as a process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from greenbutton.client import ControlPlaneClient, ControlPlaneUnreachable
from greenbutton.config import Settings
from greenbutton.governance.tokens import read_token_file


def free_port() -> int:
    """A port nobody listens on right now (loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Platform:
    """A running control plane and the settings that reach it."""

    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        assert self.settings.server.url is not None
        return self.settings.server.url

    def client(self) -> ControlPlaneClient:
        # the admin token the first `greenbutton up` saved in its home (0600)
        return ControlPlaneClient(self.url, token=read_token_file(self.settings.home))

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.environ()}


def platform_settings(home: Path) -> Settings:
    """Settings for a platform living in ``home`` on a free port, polling fast."""
    return Settings(home=home, server={"port": free_port()},  # type: ignore[arg-type]
                    controller={"poll_interval_s": 0.5}, _env_file=None)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """`greenbutton up` in a temp home; stopped (with its serving processes) afterwards."""
    settings = platform_settings(tmp_path / "gb")
    settings.home.mkdir(parents=True)
    log = settings.home / "control-plane.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                   env={**os.environ, **settings.environ()},
                                   stdout=out, stderr=subprocess.STDOUT)
    running = Platform(settings, process, log)
    previous = mlflow.get_tracking_uri()
    try:
        wait_healthy(running)
        yield running
    finally:
        mlflow.set_tracking_uri(previous)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def wait_healthy(platform: Platform, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with platform.client() as client:
        while time.monotonic() < deadline:
            if platform.process.poll() is not None:
                raise AssertionError(f"greenbutton up exited:\n{platform.log.read_text()}")
            try:
                client.health()
                return
            except ControlPlaneUnreachable:
                time.sleep(0.1)
    raise AssertionError(f"control plane not healthy in {timeout_s} s:\n{platform.log.read_text()}")
