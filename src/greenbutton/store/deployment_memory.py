"""``MemoryDeploymentStore``: deployment specs in a dict, for tests and ``memory://``."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..errors import StaleState
from .governance_records import AuditEvent
from .protocol import StoredDeploymentSpec


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryDeploymentStore:
    """Deployment specs in process memory; thread-safe, lost on exit."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._specs: dict[str, StoredDeploymentSpec] = {}
        self.audit_events: list[AuditEvent] = []
        """What a SQL store would have appended to its audit log."""

    def get_spec(self, name: str) -> StoredDeploymentSpec | None:
        """The spec stored under ``name``, if any."""
        with self._lock:
            return _copy(self._specs.get(name))

    def list_specs(self) -> list[StoredDeploymentSpec]:
        """Every stored spec, by name."""
        with self._lock:
            return [_copy(self._specs[name]) for name in sorted(self._specs)]  # type: ignore[misc]

    def put_spec(
        self, name: str, spec: dict[str, object], *, actor: str,
        expected_revision: int | None = None, events: Sequence[AuditEvent] = (),
    ) -> StoredDeploymentSpec:
        """Create or replace; ``StaleState`` on a revision mismatch."""
        with self._lock:
            current = self._specs.get(name)
            _check_revision(name, current, expected_revision)
            saved = StoredDeploymentSpec(name, copy.deepcopy(spec),
                                         (current.revision if current else 0) + 1,
                                         self._clock(), actor)
            self._specs[name] = saved
            self.audit_events.extend(events)
            return _copy(saved)  # type: ignore[return-value]

    def delete_spec(self, name: str, *, actor: str, expected_revision: int | None = None,
                    events: Sequence[AuditEvent] = ()) -> bool:
        """Remove; False if there was none."""
        with self._lock:
            current = self._specs.get(name)
            _check_revision(name, current, expected_revision)
            if self._specs.pop(name, None) is None:
                return False
            self.audit_events.extend(events)
            return True


def _check_revision(
    name: str, current: StoredDeploymentSpec | None, expected: int | None
) -> None:
    if expected is not None and (current.revision if current else 0) != expected:
        raise StaleState(f"deployment spec {name!r} changed concurrently; reload and retry")


def _copy(spec: StoredDeploymentSpec | None) -> StoredDeploymentSpec | None:
    if spec is None:
        return None
    return StoredDeploymentSpec(spec.name, copy.deepcopy(spec.spec), spec.revision,
                                spec.updated_at, spec.updated_by)
