"""Status tells the truth: crash loops with restarts and the last error, rollouts in words."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller, DeploymentStatus
from greenbutton.controller.reconcile import DeploymentSpec
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.summary import Situation, summarize
from greenbutton.controller.targets.local import LocalTarget

Wait = Callable[[Callable[[], Awaitable[bool]], float], Awaitable[None]]


def test_summarize_rollout_names_both_versions_and_the_share_moved() -> None:
    now = Situation(state="starting", version=2, wanted=(2,), traffic={1: 100}, ready=1,
                    replicas=2)
    assert summarize(now) == "rolling out (v1 -> v2, 0 %): 1/2 ready"
    canary = Situation(state="ready", version=2, wanted=(1, 2), traffic={1: 60, 2: 40},
                       ready=2, replicas=2)
    assert summarize(canary) == "ready"  # both versions wanted: a split, not a rollout


def test_summarize_crash_loop_shows_restarts_and_last_error() -> None:
    now = Situation(state="ready", version=1, wanted=(1,), traffic={1: 100}, ready=1,
                    replicas=1, failures=3, restarts=2, last_error="exited with code 3\ntail")
    assert summarize(now) == ("crash loop: v1 failed 3 times in a row (2 restarts): "
                              "exited with code 3")


def test_summarize_never_ready_version_says_the_old_one_serves() -> None:
    now = Situation(state="failed", version=2, wanted=(2,), traffic={1: 100}, failures=1,
                    last_error="not ready after 120s", retry_in_s=1.0)
    assert summarize(now) == "failed: not ready after 120s; retry in 1 s; v1 keeps serving"


@pytest.mark.slow
async def test_crash_looping_version_is_reported_as_such(
    fast_settings: Settings, fake_argv: Any, wait_for: Wait
) -> None:
    target = LocalTarget(fast_settings, argv=fake_argv(ready_delay_s=0.1))
    spec = DeploymentSpec(name="digits", model="digits", version=1)
    controller = Controller(lambda: [spec], target, RouteTable(), fast_settings)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))

    def status() -> DeploymentStatus:
        [only] = controller.status() or [DeploymentStatus(
            name="digits", model="digits", version=1, state="pending", url="")]
        return only

    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            for crashes in range(1, 4):
                async def is_serving(restarts: int = crashes - 1) -> bool:
                    return status().state == "ready" and status().restarts == restarts

                await wait_for(is_serving, 20)
                with pytest.raises(httpx.TransportError):
                    await client.post(f"{status().backend_url}/crash")

            async def is_restarted() -> bool:
                return status().restarts == 3

            await wait_for(is_restarted, 20)
        seen = status()
        assert seen.is_crash_looping and seen.failures == 3
        assert seen.last_error is not None and "crashing on purpose" in seen.last_error
        assert seen.summary.startswith("crash loop: v1 failed 3 times in a row (3 restarts")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await target.close()
