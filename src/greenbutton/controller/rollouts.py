"""Small pure helpers of the reconcile loop: noticing finished rollouts, summing traffic.

Usage::

    watch = RolloutWatch(on_rollout=lambda spec: audit(spec))
    await watch.check(desired, routes.snapshot())   # calls on_rollout once per new rollout
    shares_by_version(backends)                        # [(version, weight, mirror_percent)]
    Controller(..., on_rollout=audit_rollout(governance_store.append_audit))   # wiring
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from ..store.governance_records import AuditEvent
from .reconcile import Backend, DeploymentSpec, InstanceState

log = logging.getLogger(__name__)

WORST_FIRST = (InstanceState.FAILED, InstanceState.STARTING, InstanceState.STOPPING,
               InstanceState.READY, InstanceState.WRITTEN)
"""Order in which a version's replicas speak for it in status: the least healthy first."""


class RolloutWatch:
    """Calls ``on_rollout(spec)`` (in a thread) once each time a deployment's route first
    carries every wanted version and replica of ``spec``; failures are logged, never raised."""

    def __init__(self, on_rollout: Callable[[DeploymentSpec], None] | None) -> None:
        self._on_rollout = on_rollout
        self._done: dict[str, DeploymentSpec] = {}

    async def check(self, desired: Sequence[DeploymentSpec],
                    routed: Mapping[str, tuple[Backend, ...]]) -> None:
        """Announce each spec of ``desired`` whose full route is live and not yet announced."""
        for spec in desired:
            versions = sorted(b.version for b in routed.get(spec.name, ()) if b.weight > 0)
            if versions != sorted(r.version for r in spec.routes for _ in range(spec.replicas)):
                continue
            if self._done.get(spec.name) == spec:
                continue
            self._done[spec.name] = spec
            if self._on_rollout is None:
                continue
            try:
                await asyncio.to_thread(self._on_rollout, spec)
            except Exception:
                log.exception("on_rollout hook failed for %s", spec.name)


def shares_by_version(backends: Sequence[Backend]) -> list[tuple[int, int, int]]:
    """(version, weight, mirror_percent) per version, its replicas' weights added up."""
    weights: dict[int, float] = {}
    mirrors: dict[int, int] = {}
    for backend in backends:
        weights[backend.version] = weights.get(backend.version, 0.0) + backend.weight
        mirrors[backend.version] = max(mirrors.get(backend.version, 0), backend.mirror_percent)
    return [(version, round(weight), mirrors[version]) for version, weight in weights.items()]


def audit_rollout(append: Callable[[list[AuditEvent]], None]) -> Callable[[DeploymentSpec], None]:
    """An ``on_rollout`` hook appending a ``deployment.rollout`` audit entry (actor
    ``greenbutton``: the controller finished what a promotion or a spec change asked)."""

    def hook(spec: DeploymentSpec) -> None:
        append([AuditEvent("greenbutton", "deployment.rollout", f"deployment:{spec.name}",
                           after={"model": spec.model, "replicas": spec.replicas,
                                  "routes": [[r.version, r.weight] for r in spec.routes],
                                  "shadow": [[v, p] for v, p in spec.mirrors.items()]})])

    return hook
