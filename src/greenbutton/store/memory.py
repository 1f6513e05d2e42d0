"""``MemoryStore``: the lifecycle store in a dict, for tests and ``memory://``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ..errors import StaleState
from .governance_records import AuditEvent
from .protocol import EXCLUSIVE_STAGES, Stage, StageChange, Transition, VersionState
from .transition_events import transition_event


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryStore:
    """Lifecycle stages and history in process memory; thread-safe, lost on exit.

    Usage::

        store = MemoryStore()
        store.apply_transitions([StageChange("digits", 1, Stage.NONE, Stage.STAGING)], actor="a")
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[tuple[str, int], VersionState] = {}
        self._history: list[Transition] = []
        self.audit_events: list[AuditEvent] = []
        """What a SQL store would have appended to its audit log."""

    def stage_of(self, model: str, version: int) -> Stage:
        """The version's stage; ``Stage.NONE`` when it was never transitioned."""
        with self._lock:
            state = self._states.get((model, version))
        return Stage.NONE if state is None else state.stage

    def list_states(self, model: str | None = None) -> list[VersionState]:
        """Every version with a recorded stage, optionally of one model, by (model, version)."""
        with self._lock:
            states = [s for s in self._states.values() if model is None or s.model == model]
        return sorted(states, key=lambda s: (s.model, s.version))

    def versions_in(self, stage: Stage) -> list[VersionState]:
        """Every version currently in ``stage``, by (model, version)."""
        return [s for s in self.list_states() if s.stage is stage]

    def apply_transitions(
        self, changes: list[StageChange], *, actor: str, reason: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> list[Transition]:
        """Apply all changes at once, or none; ``StaleState`` if a ``from_stage`` is not
        current. Their audit events are kept in :attr:`audit_events`."""
        at = self._clock()
        with self._lock:
            staged = dict(self._states)
            done: list[Transition] = []
            for change in changes:
                key = (change.model, change.version)
                current = staged[key].stage if key in staged else Stage.NONE
                if current is not change.from_stage:
                    raise StaleState(
                        f"version {change.version} of {change.model!r} is {current}, "
                        f"not {change.from_stage}"
                    )
                staged[key] = VersionState(change.model, change.version, change.to_stage, at, actor)
                if change.to_stage in EXCLUSIVE_STAGES and _holders(staged, change) > 1:
                    raise StaleState(
                        f"another version of {change.model!r} is already in {change.to_stage}"
                    )
                done.append(
                    Transition(
                        id=len(self._history) + len(done) + 1,
                        model=change.model,
                        version=change.version,
                        from_stage=change.from_stage,
                        to_stage=change.to_stage,
                        actor=actor,
                        reason=reason,
                        at=at,
                    )
                )
            self._states = staged
            self._history.extend(done)
            self.audit_events.extend(transition_event(t, context) for t in done)
        return done

    def history(self, model: str, version: int | None = None) -> list[Transition]:
        """Transitions of a model (or one version), oldest first."""
        with self._lock:
            return [
                t
                for t in self._history
                if t.model == model and (version is None or t.version == version)
            ]

    def restore_stages(self, stages: list[tuple[str, int, Stage]], *,
                       events: list[AuditEvent]) -> None:
        """Put versions back to a governed stage (``NONE``: forgotten)."""
        at = self._clock()
        with self._lock:
            for model, version, stage in stages:
                self._states.pop((model, version), None)
                if stage is not Stage.NONE:
                    self._states[(model, version)] = VersionState(model, version, stage, at,
                                                                  "greenbutton")
            self.audit_events.extend(events)

    def close(self) -> None:
        """Nothing to release."""


def _holders(states: dict[tuple[str, int], VersionState], change: StageChange) -> int:
    """How many versions of the change's model are in its target stage."""
    return sum(1 for s in states.values() if s.model == change.model and s.stage is change.to_stage)
