"""The Target contract, run against every deploy backend (``local://`` so far)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from greenbutton.config import Settings
from greenbutton.controller.reconcile import InstanceState, ObservedDeployment, VersionRef
from greenbutton.controller.targets import Target
from greenbutton.controller.targets.local import LocalTarget

FAKE_SERVER = Path(__file__).parent.parent / "controller" / "fake_server.py"
V1 = VersionRef("digits", "digits", 1)


def _local(settings: Settings) -> Target:
    def argv(ref: VersionRef, fd: int) -> list[str]:
        return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version", str(ref.version)]

    return LocalTarget(settings, argv=argv)


BACKENDS: dict[str, Callable[[Settings], Target]] = {"local": _local}


@pytest.fixture(params=sorted(BACKENDS))
async def target(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Target]:
    target = BACKENDS[request.param](settings)
    yield target
    await target.close()


async def ready(target: Target, timeout_s: float = 20.0) -> ObservedDeployment:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [instance] = await target.observe()
        if instance.state is InstanceState.READY:
            return instance
        await asyncio.sleep(0.05)
    pytest.fail(f"not ready within {timeout_s}s")


async def test_observe_new_target_returns_nothing(target: Target) -> None:
    assert await target.observe() == []


async def test_start_reports_instance_of_that_version(target: Target) -> None:
    await target.start(V1)
    [instance] = await target.observe()
    assert instance.ref == V1
    assert instance.state in (InstanceState.STARTING, InstanceState.READY)


async def test_start_instance_becomes_ready_and_answers(target: Target) -> None:
    await target.start(V1)
    instance = await ready(target)
    assert instance.url is not None
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"{instance.url}/health/ready")).status_code == 200


async def test_start_twice_keeps_one_instance(target: Target) -> None:
    await target.start(V1)
    await target.start(V1)
    assert len(await target.observe()) == 1


async def test_stop_removes_instance(target: Target) -> None:
    await target.start(V1)
    await ready(target)
    await target.stop(V1, drain_timeout_s=5.0)
    assert await target.observe() == []


async def test_stop_unknown_version_does_nothing(target: Target) -> None:
    await target.stop(V1, drain_timeout_s=1.0)
    assert await target.observe() == []


async def test_close_leaves_nothing_running(target: Target) -> None:
    await target.start(V1)
    await target.close()
    assert await target.observe() == []
