"""Several replicas per version on the local target: plan, gateway, crash, kill -9 adoption."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_rollout import GatewayServer, Wait, load

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import (
    Backend,
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    RouteSpec,
    StartVersion,
    StopVersion,
    SwitchTraffic,
    VersionRef,
    plan,
)
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.controller.targets.local_records import is_alive, load_records

CONTROLLER = Path(__file__).with_name("controller_process.py")


def spec(version: int, replicas: int, **extra: Any) -> DeploymentSpec:
    return DeploymentSpec(name="wine", model="wine", version=version, replicas=replicas, **extra)


def live(version: int, replica: int, state: InstanceState = InstanceState.READY,
         **extra: Any) -> ObservedDeployment:
    url = f"http://127.0.0.1:{9000 + 10 * version + replica}"
    return ObservedDeployment(VersionRef("wine", "wine", version, replica), state, url, **extra)


def test_plan_starts_one_replica_first_then_the_others_and_routes_only_the_ready_ones() -> None:
    assert plan([spec(1, 3)], []) == [
        StartVersion(VersionRef("wine", "wine", 1, 0)), SwitchTraffic("wine", ())]
    first = [live(1, 0)]
    assert plan([spec(1, 3)], first, {"wine": ()}) == [
        StartVersion(VersionRef("wine", "wine", 1, r)) for r in (1, 2)] + [
        SwitchTraffic("wine", (Backend(1, live(1, 0).url or "", 100),))]
    half = [live(1, 0), live(1, 1), live(1, 2, InstanceState.STARTING)]
    [switch] = plan([spec(1, 3)], half, {"wine": ()})
    assert switch == SwitchTraffic("wine", (Backend(1, live(1, 0).url or "", 50),
                                            Backend(1, live(1, 1).url or "", 50)))


def test_plan_gives_each_replica_an_equal_share_of_its_version_weight() -> None:
    split = (RouteSpec(version=1, weight=80), RouteSpec(version=2, weight=20))
    observed = [live(v, r) for v in (1, 2) for r in range(2)]
    [switch] = plan([spec(1, 2, split=split)], observed)
    assert isinstance(switch, SwitchTraffic)
    assert [(b.version, b.weight) for b in switch.backends] == [(1, 40), (1, 40), (2, 10), (2, 10)]


def test_plan_rollout_switches_on_a_ready_new_replica_and_drains_old_ones_once_all_are() -> None:
    old_route = tuple(Backend(1, live(1, r).url or "", 50) for r in range(2))
    none_ready = [live(1, 0), live(1, 1), live(2, 0, InstanceState.STARTING),
                  live(2, 1, InstanceState.STARTING)]
    assert plan([spec(2, 2)], none_ready, {"wine": old_route}) == []
    one_ready = [live(1, 0), live(1, 1), live(2, 0), live(2, 1, InstanceState.STARTING)]
    first = (Backend(2, live(2, 0).url or "", 100),)
    assert plan([spec(2, 2)], one_ready, {"wine": old_route}) == [SwitchTraffic("wine", first)]
    assert plan([spec(2, 2)], one_ready, {"wine": first}) == []  # v1 stays up meanwhile
    ready = [live(1, 0), live(1, 1), live(2, 0), live(2, 1)]
    actions = plan([spec(2, 2)], ready, {"wine": first})
    assert isinstance(actions[0], SwitchTraffic)
    assert [(b.version, b.weight) for b in actions[0].backends] == [(2, 50), (2, 50)]
    assert actions[1:] == [StopVersion(o.ref, o.url) for o in ready[:2]]


def test_plan_restarts_only_the_failed_replica_and_keeps_the_others_routed() -> None:
    route = tuple(Backend(1, live(1, r).url or "", 50) for r in range(2))
    failed = live(1, 1, InstanceState.FAILED, failures=1, state_age_s=60.0)
    actions = plan([spec(1, 2)], [live(1, 0), failed], {"wine": route})
    alone = (Backend(1, live(1, 0).url or "", 100),)  # carries its version's whole share
    assert actions == [StartVersion(failed.ref), SwitchTraffic("wine", alone)]


def test_plan_scale_down_switches_first_then_stops_extra_replicas() -> None:
    observed = [live(1, r) for r in range(3)]
    route = tuple(Backend(1, o.url or "", 100 / 3) for o in observed)
    actions = plan([spec(1, 1)], observed, {"wine": route})
    assert actions == [SwitchTraffic("wine", (Backend(1, observed[0].url or "", 100),)),
                       *[StopVersion(o.ref, o.url) for o in observed[1:]]]


@pytest.mark.slow
async def test_two_replicas_share_traffic_roll_out_without_errors_and_restart_alone(
    fast_settings: Settings, fake_argv: Any, wait_for: Wait
) -> None:
    routes, target = RouteTable(), LocalTarget(fast_settings, argv=fake_argv())
    desired = [spec(1, 2)]
    controller = Controller(lambda: list(desired), target, routes, fast_settings)
    server = GatewayServer(routes, fast_settings)
    server.start()
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))

    async def routed(version: int) -> bool:
        backends = routes.snapshot().get("wine", ())
        return len(backends) == 2 and {b.version for b in backends} == {version}

    try:
        await wait_for(lambda: routed(1), 20.0)
        async with httpx.AsyncClient(base_url=f"{server.url}/wine", trust_env=False) as client:
            pids = Counter([(await client.post("/predict", content=b"{}")).json()["pid"]
                            for _ in range(40)])
        assert len(pids) == 2 and min(pids.values()) >= 5  # both replicas answer

        keep, crash = routes.snapshot()["wine"]
        async with httpx.AsyncClient(trust_env=False) as client:
            with pytest.raises(httpx.TransportError):
                await client.post(f"{crash.url}/crash")

        async def crashed_one_replaced() -> bool:
            urls = {b.url for b in routes.snapshot().get("wine", ())}
            return len(urls) == 2 and keep.url in urls and crash.url not in urls

        await wait_for(crashed_one_replaced, 20.0)

        halt, errors, answers = asyncio.Event(), list[str](), list[int]()
        client_task = asyncio.create_task(load(f"{server.url}/wine", halt, answers, errors))
        desired[:] = [spec(2, 2)]
        controller.trigger()
        await wait_for(lambda: routed(2), 20.0)
        await wait_for(lambda: _has(answers, 2, 20), 10.0)
        halt.set()
        await client_task
        assert errors == []
        switch = answers.index(2)
        assert set(answers[:switch]) == {1} and set(answers[switch:]) == {2}

        async def old_gone() -> bool:
            return sorted((o.ref.version, o.ref.replica) for o in await target.observe()) == [
                (2, 0), (2, 1)]

        await wait_for(old_gone, 15.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await target.close()
        server.stop()


async def _has(answers: list[int], version: int, count: int) -> bool:
    return answers.count(version) >= count


@pytest.mark.slow
async def test_kill9_then_restart_adopts_every_replica(
    fast_settings: Settings, fake_argv: Any
) -> None:
    home, desired_file = fast_settings.home, fast_settings.home / "desired.json"
    home.mkdir(parents=True, exist_ok=True)
    desired = {"name": "wine", "model": "wine", "version": 1, "replicas": 3}
    desired_file.write_text(json.dumps([desired]))
    first = subprocess.Popen([sys.executable, str(CONTROLLER), str(home), str(desired_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = home / "run" / "local-target.json"
    try:
        deadline = time.monotonic() + 20
        while len([r for r in load_records(state) if r.pid]) < 3:
            assert time.monotonic() < deadline, "replicas not recorded"
            await asyncio.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    before = {r.replica: r for r in load_records(state)}
    assert sorted(before) == [0, 1, 2]

    target = LocalTarget(fast_settings, argv=fake_argv())
    routes = RouteTable()
    controller = Controller(lambda: [DeploymentSpec(**desired)], target, routes, fast_settings)
    try:
        deadline = time.monotonic() + 20
        while len(routes.snapshot().get("wine", ())) < 3:
            assert time.monotonic() < deadline, "did not converge"
            await controller.reconcile_once()
            await asyncio.sleep(0.05)
        after = {r.replica: r for r in load_records(state)}
        assert {k: (r.pid, r.port) for k, r in after.items()} == {
            k: (r.pid, r.port) for k, r in before.items()}  # adopted, none started again
        assert len(await target.observe()) == 3
    finally:
        await target.close()
    assert not any(is_alive(r.pid or 0) for r in before.values())
