"""kill -9 of the controller at any point: the next one adopts live children, no duplicates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec, InstanceState, VersionRef
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.controller.targets.local_records import is_alive, load_records

CONTROLLER = Path(__file__).with_name("controller_process.py")


def _state(home: Path) -> dict[int, dict[str, Any]]:
    return {r.version: r.__dict__ for r in load_records(home / "run" / "local-target.json")
            if r.pid is not None}


async def _until(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


def _spawn_controller(home: Path, desired: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CONTROLLER), str(home), str(desired)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.slow
async def test_kill9_mid_rollout_then_restart_adopts_and_converges(
    fast_settings: Settings, fake_argv: Any
) -> None:
    home, desired = fast_settings.home, fast_settings.home / "desired.json"
    home.mkdir(parents=True, exist_ok=True)
    desired.write_text(json.dumps([{"name": "digits", "model": "digits", "version": 1}]))
    first = _spawn_controller(home, desired)
    try:
        await _until(lambda: 1 in _state(home), 20)
        await asyncio.sleep(0.5)  # v1 ready and routed
        desired.write_text(json.dumps([{"name": "digits", "model": "digits", "version": 2}]))
        await _until(lambda: 2 in _state(home), 20)  # v2 spawned, not ready yet (1.5 s)
    finally:
        _kill9(first)
    before = _state(home)
    assert all(is_alive(r["pid"]) for r in before.values())  # orphans, until adopted

    target = LocalTarget(fast_settings, argv=fake_argv())
    routes = RouteTable()
    spec = DeploymentSpec(name="digits", model="digits", version=2)
    controller = Controller(lambda: [spec], target, routes, fast_settings)
    try:
        async def converged() -> bool:
            await controller.reconcile_once()
            observed = await target.observe()
            return [(o.ref.version, o.state) for o in observed] == [(2, InstanceState.READY)] \
                and [b.version for b in routes.snapshot().get("digits", ())] == [2]

        deadline = time.monotonic() + 30
        while not await converged():
            assert time.monotonic() < deadline, "did not converge"
            await asyncio.sleep(0.1)
        await _until(lambda: not is_alive(before[1]["pid"]), 10)  # v1 drained and stopped
        after = _state(home)
        assert list(after) == [2]
        assert after[2]["pid"] == before[2]["pid"]  # adopted, not started again
        assert after[2]["port"] == before[2]["port"]
    finally:
        await target.close()
        leftovers = [r["pid"] for r in before.values() if is_alive(r["pid"])]
        for pid in leftovers:  # never leave an orphan behind, whatever failed
            os.kill(pid, signal.SIGKILL)
    assert leftovers == []


async def test_recycled_pid_is_neither_adopted_nor_signalled(
    fast_settings: Settings, fake_argv: Any
) -> None:
    state_file = fast_settings.home / "run" / "local-target.json"
    state_file.parent.mkdir(parents=True)
    # our own pid: alive, but without the recorded instance id (as a recycled pid would be)
    stranger = {"name": "digits", "model": "digits", "version": 7, "port": 1,
                "instance_id": "0" * 32, "log": "", "pid": os.getpid(), "start_time": None}
    state_file.write_text(json.dumps({"instances": [stranger]}))
    target = LocalTarget(fast_settings, argv=fake_argv())
    try:
        assert await target.observe() == []
        assert load_records(state_file) == []
    finally:
        await target.close()


async def test_adopted_child_keeps_url_and_becomes_ready(
    fast_settings: Settings, fake_argv: Any
) -> None:
    first = LocalTarget(fast_settings, argv=fake_argv(ready_delay_s=0.1))
    ref = VersionRef("digits", "digits", 1)
    await first.start(ref)
    url = (await first.observe())[0].url
    second = LocalTarget(fast_settings, argv=fake_argv())  # first "crashed": never closed
    try:
        for _ in range(100):
            observed = await second.observe()
            if observed and observed[0].state is InstanceState.READY:
                break
            await asyncio.sleep(0.05)
        assert [(o.ref, o.state, o.url) for o in observed] == [(ref, InstanceState.READY, url)]
    finally:
        await second.close()
        await first.close()  # its child was stopped by second: nothing left to do
