"""Controller + RouteTable + gateway + real processes: blue-green rollouts without errors."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller, DeploymentState
from greenbutton.controller.reconcile import DeploymentSpec
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.controlplane.gateway import create_gateway

pytestmark = pytest.mark.slow
Wait = Callable[[Callable[[], Awaitable[bool]], float], Awaitable[None]]
MAX_REQUESTS = 2000
MAX_LOAD_S = 20.0


class GatewayServer:
    """The gateway on a real uvicorn, in a thread with its own event loop, on 127.0.0.1."""

    def __init__(self, routes: RouteTable, settings: Settings) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(create_gateway(routes, settings), log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]})

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self._server.started

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass
class Rollout:
    controller: Controller
    target: LocalTarget
    gateway_url: str
    desired: list[DeploymentSpec] = field(default_factory=list)

    def promote(self, version: int) -> None:
        self.desired[:] = [DeploymentSpec(name="digits", model="digits", version=version)]
        self.controller.trigger()

    async def pids(self) -> dict[int, int]:
        return {i.ref.version: int(i.handle or 0) for i in await self.target.observe()}


@pytest.fixture
async def rollout(fast_settings: Settings, fake_argv: Any) -> AsyncIterator[Rollout]:
    routes = RouteTable()
    target = LocalTarget(fast_settings, argv=fake_argv())
    desired: list[DeploymentSpec] = []
    controller = Controller(lambda: list(desired), target, routes, fast_settings)
    server = GatewayServer(routes, fast_settings)
    server.start()
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield Rollout(controller, target, f"{server.url}/digits", desired)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await target.close()
        server.stop()


async def serving(rollout: Rollout, version: int, wait_for: Wait) -> None:
    async def is_serving() -> bool:
        return [(s.state, s.serving_version) for s in rollout.controller.status()] == [
            (DeploymentState.READY, version)
        ]

    await wait_for(is_serving, 20.0)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def load(
    gateway_url: str, stop: asyncio.Event, answers: list[int], errors: list[str]
) -> None:
    """One client on a keep-alive connection, sending requests one after another."""
    deadline = time.monotonic() + MAX_LOAD_S
    async with httpx.AsyncClient(base_url=gateway_url, trust_env=False, timeout=10) as client:
        while not stop.is_set() and time.monotonic() < deadline and len(answers) < MAX_REQUESTS:
            try:
                response = await client.post("/predict", content=b'{"inputs": [1]}')
            except httpx.TransportError as error:
                errors.append(repr(error))
                continue
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text}")
                continue
            answers.append(response.json()["version"])


async def test_promote_switches_versions_without_failed_requests(
    rollout: Rollout, wait_for: Wait
) -> None:
    rollout.promote(1)
    await serving(rollout, 1, wait_for)
    stop, errors = asyncio.Event(), list[str]()
    answers: list[list[int]] = [[] for _ in range(4)]
    clients = [asyncio.create_task(load(rollout.gateway_url, stop, a, errors)) for a in answers]

    async def has_answers(version: int, count: int) -> bool:
        return all(a.count(version) >= count for a in answers) or all(t.done() for t in clients)

    await wait_for(lambda: has_answers(1, 10), 10.0)
    rollout.promote(2)
    await wait_for(lambda: has_answers(2, 20), 20.0)
    stop.set()
    await asyncio.gather(*clients)

    assert errors == []
    for seen in answers:
        assert seen.count(1) >= 10 and seen.count(2) >= 20
        switch = seen.index(2)
        assert set(seen[:switch]) == {1} and set(seen[switch:]) == {2}


async def test_promote_stops_old_process_after_switch(rollout: Rollout, wait_for: Wait) -> None:
    rollout.promote(1)
    await serving(rollout, 1, wait_for)
    v1_pid = (await rollout.pids())[1]
    rollout.promote(2)
    await serving(rollout, 2, wait_for)

    async def is_old_gone() -> bool:
        return list(await rollout.pids()) == [2] and not is_alive(v1_pid)

    await wait_for(is_old_gone, 15.0)


async def test_crashed_process_is_restarted_and_rerouted(rollout: Rollout, wait_for: Wait) -> None:
    rollout.promote(1)
    await serving(rollout, 1, wait_for)
    [before] = rollout.controller.status()
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{before.backend_url}/crash")

    async def is_rerouted() -> bool:
        [status] = rollout.controller.status()
        return status.state is DeploymentState.READY and status.backend_url not in (
            None, before.backend_url
        )

    await wait_for(is_rerouted, 20.0)
    async with httpx.AsyncClient(base_url=rollout.gateway_url, trust_env=False) as client:
        response = await client.post("/predict", content=b"{}")
    assert (response.status_code, response.json()["version"]) == (200, 1)


async def test_unpromoted_deployment_is_removed(rollout: Rollout, wait_for: Wait) -> None:
    rollout.promote(1)
    await serving(rollout, 1, wait_for)
    v1_pid = (await rollout.pids())[1]
    rollout.desired.clear()
    rollout.controller.trigger()

    async def is_removed() -> bool:
        return await rollout.pids() == {} and not is_alive(v1_pid)

    await wait_for(is_removed, 15.0)
    async with httpx.AsyncClient(base_url=rollout.gateway_url, trust_env=False) as client:
        response = await client.post("/predict", content=b"{}")
    assert response.status_code == 404


async def test_status_reports_stable_gateway_url(rollout: Rollout, wait_for: Wait) -> None:
    rollout.promote(1)
    await serving(rollout, 1, wait_for)
    [status] = rollout.controller.status()
    assert status.url == "http://127.0.0.1:8600/endpoints/digits/"
