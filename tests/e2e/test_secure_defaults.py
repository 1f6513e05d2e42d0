"""Secure by default where it matters: endpoints need tokens beyond loopback however the
interface was chosen, secrets stay out of output and logs, the home is private, and a
promotion waiting for another approver says so (and exits 3)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from control_plane import log_echo_versions
from greenbutton.config import Settings

from .conftest import Platform, free_port, platform_settings

pytestmark = pytest.mark.slow


def test_a_listener_beyond_loopback_turns_endpoint_auth_on(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert not settings.is_endpoint_auth_required
    assert settings.listening(server_host="0.0.0.0").is_endpoint_auth_required
    assert settings.listening(serving_host="::").is_endpoint_auth_required


def test_endpoint_auth_cannot_be_switched_off_beyond_loopback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, auth={"is_endpoint_auth_enabled": False},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        settings.listening(server_host="0.0.0.0")


def run_cli(platform: Platform, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greenbutton", *argv], env=platform.env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def open_to_the_network(tmp_path: Path) -> Iterator[tuple[Platform, str]]:
    """``greenbutton up --host 0.0.0.0`` in a fresh home, and what it printed."""
    settings = platform_settings(tmp_path / "gb")
    settings.home.mkdir()
    log = settings.home / "up.log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "greenbutton", "up", "--host", "0.0.0.0", "--port", str(port)],
            env={**os.environ, **settings.environ()}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{url}/api/v1/health", timeout=1).json()
                break
            except httpx.HTTPError:
                assert process.poll() is None, log.read_text()
                time.sleep(0.2)
        yield Platform(settings, process, log), url
        assert health["endpoint_auth"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_up_beyond_loopback_requires_tokens_and_says_so(
        open_to_the_network: tuple[Platform, str]) -> None:
    platform, url = open_to_the_network
    assert httpx.get(f"{url}/api/v1/health", timeout=5).json()["endpoint_auth"] is True
    assert "a bearer token holding 'invoke'" in platform.log.read_text()


def test_up_writes_no_secret_to_its_output_and_keeps_its_home_private(
        open_to_the_network: tuple[Platform, str]) -> None:
    platform, _ = open_to_the_network
    home = platform.settings.home
    token = (home / "admin.token").read_text().strip()
    assert token.startswith("gb_") and token not in platform.log.read_text()
    assert "admin.token" in platform.log.read_text()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("admin.token", "audit.key", "greenbutton.db"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_grant_invoke_warns_when_endpoints_are_open(platform: Platform) -> None:
    done = run_cli(platform, "grant", "admin", "echo", "invoke")
    assert done.returncode == 0, done.stderr
    assert "warning: endpoint auth is off" in done.stderr


def test_promote_under_four_eyes_says_it_is_pending_and_exits_3(platform: Platform) -> None:
    log_echo_versions(platform.settings, [{}])
    assert run_cli(platform, "policy", "echo", "on").returncode == 0
    done = run_cli(platform, "promote", "echo", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "pending approval: request #" in done.stdout


def test_serve_beyond_loopback_refuses_callers_without_a_token(platform: Platform) -> None:
    log_echo_versions(platform.settings, [{}])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "greenbutton", "serve", "models:/echo/1", "--host", "0.0.0.0",
         "--port", str(port)], env=platform.env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None
            time.sleep(0.2)
        answer = httpx.post(f"{url}/predict", json={"inputs": [{"x": 1.0}]}, timeout=10)
        assert answer.status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
