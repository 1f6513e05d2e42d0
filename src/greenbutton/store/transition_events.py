"""The audit entry every store appends for each lifecycle transition it applies."""

from __future__ import annotations

from collections.abc import Mapping

from .governance_records import AuditEvent
from .protocol import Transition

TRANSITION_ACTION = "lifecycle.transition"


def transition_event(done: Transition, context: Mapping[str, object] | None) -> AuditEvent:
    """The ``lifecycle.transition`` entry of one applied transition (``context``, e.g. the
    approving request, is added to what it records)."""
    return AuditEvent(done.actor, TRANSITION_ACTION, f"model:{done.model}/{done.version}",
                      before=done.from_stage.value,
                      after={**(context or {}), "model": done.model, "version": done.version,
                             "stage": done.to_stage.value})
