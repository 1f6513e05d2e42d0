"""Where deployments run: the ``Target`` protocol and ``open_target`` by URI scheme.

Usage::

    target = open_target("local://", settings)
    await target.start(VersionRef("digits", "digits", 3))
    await target.observe()   # [ObservedDeployment(..., state=InstanceState.STARTING)]
    await target.stop(VersionRef("digits", "digits", 3), drain_timeout_s=30)
    await target.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ...config import Settings
from ...errors import InvalidInput, UnsupportedBackend
from ..reconcile import Backend, DeploymentSpec, ObservedDeployment, VersionRef


class Target(Protocol):
    """A place that runs one serving instance per (deployment, version, replica)."""

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


@runtime_checkable
class SpecAwareTarget(Protocol):
    """A target that renders whole deployments (Kubernetes): it is told the resolved specs
    every pass, runs the replicas itself, and routes traffic itself (an Ingress)."""

    async def desire(self, desired: Sequence[DeploymentSpec]) -> None:
        """The deployments wanted now (called before ``observe`` on every pass)."""
        ...

    async def route(self, name: str, backends: tuple[Backend, ...]) -> None:
        """Send ``name``'s traffic to ``backends`` (weights and mirrors as the gateway)."""
        ...


def _local(uri: str, settings: Settings) -> Target:
    from .local import LocalTarget

    if not settings.sandbox.is_serving_sandboxed:
        return LocalTarget(settings)
    from .local_sandbox import SandboxedServing

    return LocalTarget(settings, sandboxed=SandboxedServing(settings))


def _kubernetes(uri: str, settings: Settings) -> Target:
    from .kubernetes.apply import parse_target
    from .kubernetes.manifests import KubernetesOptions
    from .kubernetes.sinks import ClusterSink
    from .kubernetes.target import KubernetesTarget

    context, namespace = parse_target(uri)
    return KubernetesTarget(ClusterSink(context, namespace),
                            KubernetesOptions.from_settings(settings, namespace))


def _kubernetes_dir(uri: str, settings: Settings) -> Target:
    from .kubernetes.manifests import KubernetesOptions
    from .kubernetes.sinks import DirSink
    from .kubernetes.target import KubernetesTarget

    path = uri.partition("://")[2]
    if not path.startswith("/"):
        raise InvalidInput(f"kubernetes+dir:// wants an absolute path: {uri!r}", field="target")
    return KubernetesTarget(DirSink(Path(path)),
                            KubernetesOptions.from_settings(settings, "default"))


BUILDERS: dict[str, Callable[[str, Settings], Target]] = {
    "local": _local, "kubernetes": _kubernetes, "kubernetes+dir": _kubernetes_dir}


def open_target(uri: str, settings: Settings) -> Target:
    """The deploy target named by ``uri``: ``local://``, ``kubernetes://context/namespace``
    or ``kubernetes+dir:///absolute/path`` (GitOps folder)."""
    scheme = uri.partition(":")[0]
    if scheme not in BUILDERS:
        raise UnsupportedBackend(scheme, known=sorted(BUILDERS))
    return BUILDERS[scheme](uri, settings)
