"""A real controller process for kill -9 tests: reconcile loop + local target + fake servers.

Run as ``python controller_process.py HOME DESIRED_JSON``; the desired state is re-read from
``DESIRED_JSON`` (a list of ``{"name", "model", "version"}``) on every pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec, VersionRef
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets.local import LocalTarget

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


def argv(ref: VersionRef, fd: int) -> list[str]:
    """The fake server; version 2 takes a second to become ready (a rollout in progress)."""
    delay = "1.5" if ref.version == 2 else "0.1"
    return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version", str(ref.version),
            "--ready-delay-s", delay]


async def main(home: Path, desired_file: Path) -> None:
    """Reconcile forever (until killed)."""
    settings = Settings(home=home, _env_file=None)  # type: ignore[call-arg]
    controller_settings = settings.controller.model_copy(update={
        "poll_interval_s": 0.2, "ready_poll_interval_s": 0.05, "drain_timeout_s": 2.0})
    settings = settings.model_copy(update={"controller": controller_settings})

    def desired() -> list[DeploymentSpec]:
        return [DeploymentSpec(**d) for d in json.loads(desired_file.read_text())]

    controller = Controller(desired, LocalTarget(settings, argv=argv), RouteTable(), settings)
    await controller.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
