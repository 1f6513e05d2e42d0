"""Where deployments run: the ``Target`` protocol and ``open_target`` by URI scheme.

Usage::

    target = open_target("local://", settings)
    await target.start(VersionRef("digits", "digits", 3))
    await target.observe()   # [ObservedDeployment(..., state=InstanceState.STARTING)]
    await target.stop(VersionRef("digits", "digits", 3), drain_timeout_s=30)
    await target.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ...config import Settings
from ...errors import UnsupportedBackend
from ..reconcile import ObservedDeployment, VersionRef


class Target(Protocol):
    """A place that runs one serving instance per (deployment, version)."""

    async def observe(self) -> list[ObservedDeployment]:
        """Every instance this target runs, with its current state."""
        ...

    async def start(self, ref: VersionRef) -> None:
        """Start ``ref``; replaces a failed instance, does nothing if it is already live."""
        ...

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        """Ask ``ref`` to finish its requests and exit; force it after ``drain_timeout_s``."""
        ...

    async def close(self) -> None:
        """Stop every instance and release resources."""
        ...


def _local(uri: str, settings: Settings) -> Target:
    from .local import LocalTarget

    return LocalTarget(settings)


BUILDERS: dict[str, Callable[[str, Settings], Target]] = {"local": _local}


def open_target(uri: str, settings: Settings) -> Target:
    """The deploy target named by ``uri`` (``local://``)."""
    scheme = uri.partition(":")[0]
    if scheme not in BUILDERS:
        raise UnsupportedBackend(scheme, known=sorted(BUILDERS))
    return BUILDERS[scheme](uri, settings)
