"""A real controller process for kill -9 tests: reconcile loop + local target + fake servers.

Run as ``python controller_process.py HOME DESIRED_JSON [--gateway-port P] [--ready-delay
V=S ...] [--versions JSON] [--status-file JSON]``; the desired state is re-read from
``DESIRED_JSON`` (a list of ``{"name", "model", "version"}``) on every pass. With
``--gateway-port`` the process also serves the stable URLs (the real gateway, ``/<name>/...``) on
127.0.0.1:P, as ``greenbutton up`` does: a kill -9 of this process is a kill -9 of the control
plane.

``--versions`` names a file ``{"V": "S" | "exit"}`` re-read at every spawn: version V is ready
after S seconds (``inf``: never) or exits at once (a broken version). ``--status-file`` is
rewritten every 50 ms with what this controller believes: ``{"pid", "time", "observed":
[{"version", "replica", "state", "pid", "url"}], "routes": {name: [{"version", "url",
"weight"}]}, "status": [DeploymentStatus]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec, ObservedDeployment, VersionRef
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.controlplane.gateway import create_gateway

FAKE_SERVER = Path(__file__).with_name("fake_server.py")
DEFAULT_DELAYS_S = {2: "1.5"}
"""Version 2 takes a second and a half to become ready (a rollout in progress); others 0.1 s."""


STATUS_INTERVAL_S = 0.05


def serve_argv(delays_s: dict[int, str], versions: Path | None = None
               ) -> Callable[[VersionRef, int], list[str]]:
    """The fake server's argv, each version with its ready delay (``inf``: never ready), or
    ``exit`` (dies at once); ``versions`` (re-read at each spawn) overrides ``delays_s``. Until
    ready it answers predictions with 503: traffic routed too early shows."""

    def argv(ref: VersionRef, fd: int) -> list[str]:
        delays = {**delays_s, **_read_versions(versions)}
        delay = delays.get(ref.version, "0.1")
        behaviour = ["--exit-after-s", "0"] if delay == "exit" else ["--ready-delay-s", delay]
        return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version",
                str(ref.version), "--busy-until-ready", *behaviour]

    return argv


def _read_versions(path: Path | None) -> dict[int, str]:
    if path is None:
        return {}
    return {int(v): str(delay) for v, delay in json.loads(path.read_text()).items()}


class ReportingTarget:
    """A ``LocalTarget`` that remembers what it last observed (for the status file)."""

    def __init__(self, inner: LocalTarget) -> None:
        self.inner = inner
        self.observed: list[ObservedDeployment] = []

    async def observe(self) -> list[ObservedDeployment]:
        self.observed = await self.inner.observe()
        return self.observed

    async def start(self, ref: VersionRef) -> None:
        await self.inner.start(ref)

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        await self.inner.stop(ref, drain_timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def write_status(path: Path, controller: Controller, target: ReportingTarget,
                       routes: RouteTable) -> None:
    """Rewrite ``path`` atomically every ``STATUS_INTERVAL_S`` with what the controller thinks."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    while True:
        state = {
            "pid": os.getpid(),
            "time": time.time(),
            "observed": [{"version": o.ref.version, "replica": o.ref.replica,
                          "state": o.state.value, "pid": int(o.handle) if o.handle else None,
                          "url": o.url} for o in target.observed],
            "routes": {name: [{"version": b.version, "url": b.url, "weight": b.weight}
                              for b in backends]
                       for name, backends in routes.snapshot().items()},
            "status": [s.model_dump(mode="json") for s in controller.status()],
        }
        temp.write_text(json.dumps(state))
        os.replace(temp, path)
        await asyncio.sleep(STATUS_INTERVAL_S)


async def main(args: argparse.Namespace) -> None:
    """Reconcile (and serve the gateway) forever, until killed."""
    settings = Settings(home=args.home, _env_file=None)  # type: ignore[call-arg]
    controller_settings = settings.controller.model_copy(update={
        "poll_interval_s": 0.2, "ready_poll_interval_s": 0.05, "drain_timeout_s": 2.0,
        "restart_backoff_max_s": 4.0})
    settings = settings.model_copy(update={"controller": controller_settings})
    delays = {**DEFAULT_DELAYS_S, **dict(_delay(d) for d in args.ready_delay)}

    def desired() -> list[DeploymentSpec]:
        return [DeploymentSpec(**d) for d in json.loads(args.desired.read_text())]

    routes = RouteTable()
    target = ReportingTarget(LocalTarget(settings, argv=serve_argv(delays, args.versions)))
    controller = Controller(desired, target, routes, settings)
    loop = asyncio.create_task(controller.run(asyncio.Event()))
    if args.status_file is not None:
        reporting = asyncio.create_task(write_status(args.status_file, controller, target, routes))
        loop.add_done_callback(lambda _: reporting.cancel())
    if args.gateway_port is None:
        await loop
        return
    await routes.wait_loaded(30.0)  # as `greenbutton up`: listen once routes are loaded
    config = uvicorn.Config(create_gateway(routes, settings), host="127.0.0.1",
                            port=args.gateway_port, log_level="warning", access_log=False)
    await uvicorn.Server(config).serve()


def _delay(text: str) -> tuple[int, str]:
    version, _, seconds = text.partition("=")
    return int(version), seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("desired", type=Path)
    parser.add_argument("--gateway-port", type=int)
    parser.add_argument("--ready-delay", action="append", default=[])
    parser.add_argument("--versions", type=Path)
    parser.add_argument("--status-file", type=Path)
    asyncio.run(main(parser.parse_args()))
