"""kill -9 of one serving replica under traffic: the gateway fails no request.

Real processes on 127.0.0.1 (fake serving processes, the real controller, local target and
gateway). Requests in flight on the killed replica were received and dropped: a prediction is
sent again to the other replica; later ones to the dead port are refused and go there too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest
from test_rollout import GatewayServer, Wait

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget

pytestmark = pytest.mark.slow
MAX_REQUESTS = 2000
MAX_LOAD_S = 20.0


async def send(url: str, stop: asyncio.Event, pids: list[int], errors: list[str]) -> None:
    """One client: predictions taking 0.1 s each (so some are in flight at the kill)."""
    deadline = time.monotonic() + MAX_LOAD_S
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        while not stop.is_set() and time.monotonic() < deadline and len(pids) < MAX_REQUESTS:
            try:
                response = await client.post(f"{url}/predict?delay_s=0.1", content=b"{}")
            except httpx.TransportError as error:
                errors.append(repr(error))
                continue
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text}")
                continue
            pids.append(response.json()["pid"])


async def test_kill9_of_one_replica_fails_no_request(
    fast_settings: Settings, fake_argv: Any, wait_for: Wait
) -> None:
    routes = RouteTable()
    target = LocalTarget(fast_settings, argv=fake_argv(ready_delay_s=0.1))
    spec = DeploymentSpec(name="digits", model="digits", version=1, replicas=2)
    controller = Controller(lambda: [spec], target, routes, fast_settings)
    server = GatewayServer(routes, fast_settings)
    server.start()
    stop, done = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        async def both_routed() -> bool:
            return len(routes.snapshot().get("digits", ())) == 2

        await wait_for(both_routed, 20)
        pids = [int(o.handle or 0) for o in await target.observe()]
        answered: list[list[int]] = [[] for _ in range(4)]
        errors: list[str] = []
        clients = [asyncio.create_task(send(f"{server.url}/digits", done, a, errors))
                   for a in answered]
        await asyncio.sleep(1.0)
        os.kill(pids[0], signal.SIGKILL)
        await asyncio.sleep(3.0)  # the controller notices, restarts it, routes it again
        done.set()
        await asyncio.gather(*clients)
        seen = [pid for a in answered for pid in a]
        print(f"{len(seen)} answered, {len(errors)} failed, by pid {sorted(set(seen))}")
        assert errors == []
        assert pids[0] in seen and pids[1] in seen  # both served before the kill
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await target.close()
        server.stop()
