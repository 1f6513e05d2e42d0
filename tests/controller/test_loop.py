"""Controller against a RecordingTarget: ordering, isolation of failures, drains, triggers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller, DeploymentState
from greenbutton.controller.reconcile import (
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    VersionRef,
)
from greenbutton.controller.routing.table import RouteTable

Wait = Callable[[Callable[[], Awaitable[bool]], float], Awaitable[None]]
V1, V2 = VersionRef("digits", "digits", 1), VersionRef("digits", "digits", 2)


class RecordingTarget:
    """A Target that records calls; instances become ready when a test says so."""

    def __init__(self, broken_models: tuple[str, ...] = ()) -> None:
        self.instances: dict[VersionRef, ObservedDeployment] = {}
        self.calls: list[tuple[str, VersionRef]] = []
        self._broken_models = broken_models

    async def observe(self) -> list[ObservedDeployment]:
        return list(self.instances.values())

    async def start(self, ref: VersionRef) -> None:
        self.calls.append(("start", ref))
        if ref.model in self._broken_models:
            raise OSError(f"cannot start {ref.model}")
        url = f"http://127.0.0.1:{40000 + ref.version}"
        self.instances[ref] = ObservedDeployment(ref, InstanceState.STARTING, url)

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        self.calls.append(("stop", ref))
        self.instances.pop(ref, None)

    async def close(self) -> None:
        self.instances.clear()

    def make_ready(self, ref: VersionRef) -> None:
        self.instances[ref] = ObservedDeployment(ref, InstanceState.READY, self.instances[ref].url)


def digits(version: int) -> DeploymentSpec:
    return DeploymentSpec(name="digits", model="digits", version=version)


@pytest.fixture
def routes() -> RouteTable:
    return RouteTable()


async def serving_v1(target: RecordingTarget, routes: RouteTable, settings: Settings,
                     desired: list[DeploymentSpec]) -> Controller:
    desired[:] = [digits(1)]
    controller = Controller(lambda: list(desired), target, routes, settings)
    await controller.reconcile_once()
    target.make_ready(V1)
    await controller.reconcile_once()
    return controller


async def test_reconcile_once_failing_desired_state_stops_nothing(
    routes: RouteTable, settings: Settings
) -> None:
    target, desired = RecordingTarget(), list[DeploymentSpec]()
    controller = await serving_v1(target, routes, settings, desired)

    def unavailable() -> list[DeploymentSpec]:
        raise ConnectionError("store is down")

    broken = Controller(unavailable, target, routes, settings)
    assert await broken.reconcile_once() == []
    assert [call for call in target.calls if call[0] == "stop"] == []
    assert controller.status()[0].state is DeploymentState.READY


async def test_reconcile_once_loads_routes_unless_desired_state_fails(
    routes: RouteTable, settings: Settings
) -> None:
    def unavailable() -> list[DeploymentSpec]:
        raise ConnectionError("store is down")

    await Controller(unavailable, RecordingTarget(), routes, settings).reconcile_once()
    assert not routes.is_loaded  # the gateway keeps answering 503, not 404
    await Controller(lambda: [], RecordingTarget(), routes, settings).reconcile_once()
    assert routes.is_loaded


async def test_reconcile_once_failure_in_one_deployment_spares_others(
    routes: RouteTable, settings: Settings
) -> None:
    target = RecordingTarget(broken_models=("iris",))
    iris = DeploymentSpec(name="iris", model="iris", version=1)
    controller = Controller(lambda: [iris, digits(1)], target, routes, settings)
    await controller.reconcile_once()
    assert ("start", V1) in target.calls
    status = {s.name: s for s in controller.status()}
    assert status["iris"].reason is not None and "cannot start" in status["iris"].reason
    assert status["digits"].reason is None


async def test_reconcile_once_drains_old_version_before_stopping_it(
    routes: RouteTable, settings: Settings, wait_for: Wait
) -> None:
    target, desired = RecordingTarget(), list[DeploymentSpec]()
    controller = await serving_v1(target, routes, settings, desired)
    lease = routes.lease("digits")
    desired[:] = [digits(2)]
    await controller.reconcile_once()
    target.make_ready(V2)
    await controller.reconcile_once()
    assert routes.snapshot()["digits"][0].version == 2
    await asyncio.sleep(0.1)
    assert ("stop", V1) not in target.calls
    lease.release()

    async def is_stopped() -> bool:
        return ("stop", V1) in target.calls

    await wait_for(is_stopped, 2.0)


async def test_trigger_reconciles_before_poll_interval(
    routes: RouteTable, settings: Settings, wait_for: Wait
) -> None:
    slow = settings.model_copy(update={
        "controller": settings.controller.model_copy(update={"poll_interval_s": 60.0})
    })
    target, desired = RecordingTarget(), list[DeploymentSpec]()
    controller = Controller(lambda: list(desired), target, routes, slow)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    await asyncio.sleep(0.05)
    desired.append(digits(1))
    controller.trigger()

    async def is_started() -> bool:
        return ("start", V1) in target.calls

    try:
        await wait_for(is_started, 2.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_status_shows_desired_state_and_serving_version(
    routes: RouteTable, settings: Settings
) -> None:
    target, desired = RecordingTarget(), list[DeploymentSpec]()
    controller = await serving_v1(target, routes, settings, desired)
    desired[:] = [digits(2)]
    await controller.reconcile_once()
    await controller.reconcile_once()
    [status] = controller.status()
    assert (status.version, status.state, status.serving_version) == (
        2, DeploymentState.STARTING, 1
    )
    assert status.url == "http://127.0.0.1:8600/endpoints/digits/"
