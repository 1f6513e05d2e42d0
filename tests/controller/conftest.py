"""Fixtures for controller tests: fast settings, argv for the fake serving process, waiting."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from greenbutton.config import Settings
from greenbutton.controller.reconcile import VersionRef
from greenbutton.controller.targets.local import ServeArgv

FAKE_SERVER = Path(__file__).with_name("fake_server.py")

WaitFor = Callable[[Callable[[], Awaitable[bool]], float], Awaitable[None]]
FakeArgv = Callable[..., ServeArgv]


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Settings with short intervals and timeouts so rollouts settle in about a second."""
    controller = settings.controller.model_copy(update={
        "poll_interval_s": 0.5,
        "ready_poll_interval_s": 0.05,
        "ready_timeout_s": 20.0,
        "drain_timeout_s": 5.0,
        "restart_backoff_s": 0.2,
        "restart_backoff_max_s": 2.0,
    })
    return settings.model_copy(update={"controller": controller})


@pytest.fixture
def fake_argv() -> FakeArgv:
    """Builds a ``ServeArgv`` that runs ``fake_server.py`` instead of loading a model."""

    def build(ready_delay_s: float = 0.2) -> ServeArgv:
        def argv(ref: VersionRef, fd: int) -> list[str]:
            return [sys.executable, str(FAKE_SERVER), "--fd", str(fd),
                    "--version", str(ref.version), "--ready-delay-s", str(ready_delay_s)]

        return argv

    return build


@pytest.fixture
def wait_for() -> WaitFor:
    """Polls an async predicate until it is true; fails the test after ``timeout_s``."""

    async def wait(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not await predicate():
            if time.monotonic() >= deadline:
                pytest.fail(f"condition not met within {timeout_s}s")
            await asyncio.sleep(0.05)

    return wait
