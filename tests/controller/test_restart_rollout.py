"""kill -9 of the control plane in the middle of a rollout, then a restart, under traffic.

Real processes on 127.0.0.1: ``controller_process.py`` runs the reconcile loop, the local
target and the gateway (as ``greenbutton up`` does); fake serving processes stand for v1 (ready
at once) and v2 (slow to load, or never ready). A client sends requests throughout; every
answer the gateway gives must be a 200. Connection errors while no control plane is listening
(between the kill and the restart) are counted apart: one control plane cannot avoid them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from greenbutton.controller.targets.local_records import is_alive, load_records

pytestmark = pytest.mark.slow
CONTROLLER = Path(__file__).with_name("controller_process.py")
MAX_REQUESTS = 3000
REQUEST_INTERVAL_S = 0.05


@dataclass
class Traffic:
    """What the client saw: answers by (status, version), and connection errors."""

    answers: Counter[tuple[int, str]] = field(default_factory=Counter)
    unreachable: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def failed(self) -> int:
        return sum(n for (status, _), n in self.answers.items() if status != 200)

    async def send(self, url: str) -> None:
        """At most ``MAX_REQUESTS`` requests, one every ``REQUEST_INTERVAL_S``, until stop."""
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                try:
                    response = await client.post(url, json={"x": 1})
                    version = response.headers.get("x-greenbutton-version", "-")
                    self.answers[(response.status_code, version)] += 1
                except httpx.TransportError:
                    self.unreachable += 1
                await asyncio.sleep(REQUEST_INTERVAL_S)


class ControlPlane:
    """``controller_process.py`` with a gateway on a fixed port; killed and started again."""

    def __init__(self, home: Path, *ready_delays: str) -> None:
        self.home, self.desired = home, home / "desired.json"
        with socket.create_server(("127.0.0.1", 0)) as sock:
            self.port = sock.getsockname()[1]
        self._args = [arg for d in ready_delays for arg in ("--ready-delay", d)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/digits/predict"

    def promote(self, version: int) -> None:
        self.desired.write_text(json.dumps([{"name": "digits", "model": "digits",
                                             "version": version}]))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CONTROLLER), str(self.home), str(self.desired),
             "--gateway-port", str(self.port), *self._args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pids(self) -> dict[int, int]:
        """Recorded serving processes: version -> pid."""
        return {r.version: r.pid for r in load_records(self.home / "run" / "local-target.json")
                if r.pid is not None}

    def close(self) -> list[int]:
        """Kill the controller and whatever it recorded; the versions that were still alive."""
        if self.process is not None and self.process.poll() is None:
            self.kill9()
        alive = {v: pid for v, pid in self.pids().items() if is_alive(pid)}
        for pid in alive.values():
            os.kill(pid, signal.SIGKILL)
        return sorted(alive)


async def until(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


def _answers_200(url: str) -> bool:
    try:
        return httpx.post(url, json={"x": 1}, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


async def _restart_mid_rollout(home: Path, v2_ready_delay: str, settle_s: float,
                               served_by_v2: bool) -> tuple[Traffic, ControlPlane]:
    plane = ControlPlane(home, f"2={v2_ready_delay}")
    home.mkdir(parents=True, exist_ok=True)
    plane.promote(1)
    plane.start()
    traffic = Traffic()
    sender: asyncio.Task[None] | None = None
    try:
        await until(lambda: _answers_200(plane.url), 20)  # v1 serves: now count
        sender = asyncio.create_task(traffic.send(plane.url))
        await until(lambda: traffic.answers[(200, "1")] >= 5, 20)
        plane.promote(2)
        await until(lambda: 2 in plane.pids(), 20)  # v2 spawned, still loading
        plane.kill9()
        plane.start()
        if served_by_v2:
            await until(lambda: traffic.answers[(200, "2")] >= 10, 30)
        await asyncio.sleep(settle_s)
    finally:
        traffic.stop.set()
        if sender is not None:
            await sender
    return traffic, plane


async def test_restart_while_v2_loads_keeps_v1_serving_until_v2_is_ready(tmp_path: Path) -> None:
    traffic, plane = await _restart_mid_rollout(tmp_path / "home", "4", 1.0, served_by_v2=True)
    try:
        print(f"answers {dict(traffic.answers)}, unreachable {traffic.unreachable}")
        assert traffic.failed == 0, dict(traffic.answers)
        await until(lambda: list(plane.pids()) == [2], 10)  # v1 drained and stopped after
    finally:
        assert plane.close() == [2]


async def test_restart_while_v2_never_loads_keeps_v1_serving(tmp_path: Path) -> None:
    traffic, plane = await _restart_mid_rollout(tmp_path / "home", "inf", 6.0,
                                                served_by_v2=False)
    try:
        print(f"answers {dict(traffic.answers)}, unreachable {traffic.unreachable}")
        assert traffic.failed == 0, dict(traffic.answers)
        assert {version for _, version in traffic.answers} == {"1"}
        assert sorted(plane.pids()) == [1, 2]  # v2 still loading, v1 still serving
    finally:
        assert plane.close() == [1, 2]
