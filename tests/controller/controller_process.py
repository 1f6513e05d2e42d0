"""A real controller process for kill -9 tests: reconcile loop + local target + fake servers.

Run as ``python controller_process.py HOME DESIRED_JSON [--gateway-port P] [--ready-delay
V=S ...]``; the desired state is re-read from ``DESIRED_JSON`` (a list of ``{"name", "model",
"version"}``) on every pass. With ``--gateway-port`` the process also serves the stable URLs
(the real gateway, ``/<name>/...``) on 127.0.0.1:P, as ``greenbutton up`` does: a kill -9 of
this process is a kill -9 of the control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec, VersionRef
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.controlplane.gateway import create_gateway

FAKE_SERVER = Path(__file__).with_name("fake_server.py")
DEFAULT_DELAYS_S = {2: "1.5"}
"""Version 2 takes a second and a half to become ready (a rollout in progress); others 0.1 s."""


def serve_argv(delays_s: dict[int, str]) -> Callable[[VersionRef, int], list[str]]:
    """The fake server's argv, each version with its ready delay (``inf``: never ready)."""

    def argv(ref: VersionRef, fd: int) -> list[str]:
        return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version",
                str(ref.version), "--ready-delay-s", delays_s.get(ref.version, "0.1")]

    return argv


async def main(args: argparse.Namespace) -> None:
    """Reconcile (and serve the gateway) forever, until killed."""
    settings = Settings(home=args.home, _env_file=None)  # type: ignore[call-arg]
    controller_settings = settings.controller.model_copy(update={
        "poll_interval_s": 0.2, "ready_poll_interval_s": 0.05, "drain_timeout_s": 2.0})
    settings = settings.model_copy(update={"controller": controller_settings})
    delays = {**DEFAULT_DELAYS_S, **dict(_delay(d) for d in args.ready_delay)}

    def desired() -> list[DeploymentSpec]:
        return [DeploymentSpec(**d) for d in json.loads(args.desired.read_text())]

    routes = RouteTable()
    controller = Controller(desired, LocalTarget(settings, argv=serve_argv(delays)), routes,
                            settings)
    loop = asyncio.create_task(controller.run(asyncio.Event()))
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
    asyncio.run(main(parser.parse_args()))
