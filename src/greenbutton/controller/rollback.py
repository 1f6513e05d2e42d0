"""``rollback``: put the previous Production version back, through the lifecycle.

The previous version is the most recent one, other than the current, that entered
Production and still exists. The transition goes through ``Registry.transition``, so it is in
the lifecycle history (and audited) like any promotion. Usage::

    rollback(registry, "wine", actor="alice", reason="v4 underperforms")
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidTransition
from ..registry import Registry, Stage
from ..store.protocol import Transition


def previous_production(history: Sequence[Transition], current: int | None) -> int | None:
    """The last version other than ``current`` that entered Production, if any."""
    for transition in reversed(history):
        if transition.to_stage is Stage.PRODUCTION and transition.version != current:
            return transition.version
    return None


def rollback(
    registry: Registry, name: str, *, actor: str, reason: str | None = None
) -> list[Transition]:
    """Move the previous Production version back to Production (the current one is archived)."""
    current = next((v.version for v in registry.list_versions(name)
                    if v.stage is Stage.PRODUCTION), None)
    previous = previous_production(registry.history(name), current)
    if previous is None:
        raise InvalidTransition(f"model {name!r} has no previous Production version")
    why = reason or f"rollback from v{current} to v{previous}"
    return registry.transition(name, previous, Stage.PRODUCTION, actor=actor, reason=why,
                               context={"via": "rollback"})
