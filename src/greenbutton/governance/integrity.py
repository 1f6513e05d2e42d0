"""The governed lifecycle, read from the audit log, and what changed behind greenbutton's back.

Every transition greenbutton makes is sealed in the audit log in the transaction that makes it
(``store/transition_events.py``), after a ``lifecycle.baseline`` entry written when the log was
first sealed. Folding those entries gives the stage each version is *governed* to be in; the
stage table and MLflow's aliases are copies of it. Usage::

    governed = governed_stages(store.audit_entries(actions=LIFECYCLE_ACTIONS), seal)
    drift = stage_drift(lifecycle.list_states(), governed)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from ..errors import AuditLogBroken
from ..registry import MirrorDrift, Registry
from ..store.audit_seal import AuditSeal
from ..store.governance_records import AuditEntry, AuditEvent
from ..store.governance_sql import SqlGovernanceStore
from ..store.protocol import LifecycleStore, Stage, VersionState
from ..store.transition_events import TRANSITION_ACTION
from .audit import ChainCursor

log = logging.getLogger(__name__)
_PAGE = 1000

BASELINE_ACTION = "lifecycle.baseline"
SEALED_ACTION = "audit.sealed"
LIFECYCLE_ACTIONS = (BASELINE_ACTION, TRANSITION_ACTION)
Governed = dict[tuple[str, int], Stage]


@dataclass(frozen=True)
class StageDrift:
    """A version whose stored stage is not the governed one."""

    model: str
    version: int
    stored: Stage
    governed: Stage


def sealing_events(states: Sequence[VersionState], sealed_from: int) -> list[AuditEvent]:
    """The first entries a new audit key writes: where sealing starts, and the lifecycle as it
    stands then (the baseline later transitions are applied to)."""
    rows = [[s.model, s.version, s.stage.value] for s in states if s.stage is not Stage.NONE]
    return [AuditEvent("greenbutton", SEALED_ACTION, "audit", after={"sealed_from": sealed_from}),
            AuditEvent("greenbutton", BASELINE_ACTION, "lifecycle", after={"states": rows})]


def governed_stages(entries: Iterable[AuditEntry], seal: AuditSeal | None,
                    governed: Governed | None = None) -> Governed:
    """Fold lifecycle entries (oldest first) into ``governed`` (a new map by default); with a
    seal, entries that are not authentic are skipped (they were not written by greenbutton)."""
    state: Governed = {} if governed is None else governed
    for entry in entries:
        if seal is not None and not seal.is_authentic(entry.hash, entry.mac):
            continue
        after = json.loads(entry.after)
        if entry.action == BASELINE_ACTION:
            state.clear()
            state.update({(str(m), int(v)): Stage(s) for m, v, s in after["states"]})
        elif entry.action == TRANSITION_ACTION and "model" in after:
            state[(str(after["model"]), int(after["version"]))] = Stage(after["stage"])
    return state


def stage_drift(stored: Iterable[VersionState], governed: Governed) -> list[StageDrift]:
    """Every version whose stored stage differs from the governed one (absent: ``None``)."""
    found = {(s.model, s.version): s.stage for s in stored}
    drift = []
    for key in sorted(set(found) | set(governed)):
        have, want = found.get(key, Stage.NONE), governed.get(key, Stage.NONE)
        if have is not want:
            drift.append(StageDrift(key[0], key[1], have, want))
    return drift


@dataclass(frozen=True)
class IntegrityReport:
    """What :class:`LifecycleGuard` last found (``GET /api/v1/integrity``, ``status``)."""

    problem: str | None = None
    """The audit log itself is broken (the controller then changes nothing)."""
    repaired_stages: tuple[StageDrift, ...] = ()
    """Stage rows found changed behind greenbutton's back, and put back (last time seen)."""
    repaired_aliases: tuple[MirrorDrift, ...] = ()
    """MLflow aliases found changed behind greenbutton's back, and put back (last time seen)."""
    checked_seq: int = 0
    """How far the audit log has been read and verified."""


class LifecycleGuard:
    """Keeps the governed lifecycle in memory, reading the sealed audit log as it grows, and
    repairs the stage table and MLflow's aliases when they differ from it.

    Usage::

        guard = LifecycleGuard(audit_store, lifecycle_store, registry, seal=seal)
        desired_state(guard.governed_states(), specs)   # each reconcile pass
        guard.report()
    """

    def __init__(self, audit: SqlGovernanceStore, lifecycle: LifecycleStore,
                 registry: Registry | None, *, seal: AuditSeal | None,
                 mirror_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._audit, self._lifecycle, self._registry = audit, lifecycle, registry
        self._seal = seal
        self._cursor = ChainCursor(seal=seal, watch=frozenset(
            a.seq for a in (seal.anchors() if seal else [])))
        self._states: dict[tuple[str, int], VersionState] = {}
        self._has_baseline = False
        self._mirror_interval_s, self._clock = mirror_interval_s, clock
        self._mirror_due = 0.0
        self._report = IntegrityReport()
        self._lock = threading.Lock()

    def governed_states(self) -> list[VersionState]:
        """Every version's governed stage; repairs drift first. ``AuditLogBroken`` when the
        log cannot be trusted (the caller then keeps everything as it is)."""
        with self._lock:
            self._catch_up()
            if self._report.problem is not None:
                raise AuditLogBroken(self._report.problem)
            governed = {key: s.stage for key, s in self._states.items()}
            drift = stage_drift(self._lifecycle.list_states(), governed)
            if drift:
                self._repair_stages(drift)
            if self._registry is not None and self._clock() >= self._mirror_due:
                self._mirror_due = self._clock() + self._mirror_interval_s
                self._repair_aliases(self._registry)
            return sorted(self._states.values(), key=lambda s: (s.model, s.version))

    def report(self) -> IntegrityReport:
        """The last findings."""
        return self._report

    def _catch_up(self) -> None:
        """Read and verify what was appended since the last pass."""
        tail = self._audit.audit_tail()
        if tail < self._cursor.seq:
            self._fail(f"the audit log ends at entry {tail} but reached entry "
                       f"{self._cursor.seq}: truncated")
            return
        while self._cursor.problem is None:
            page = self._audit.audit_entries(after_seq=self._cursor.seq, limit=_PAGE)
            if not page:
                break
            passed = page[:self._cursor.advance(page)]
            self._fold(passed)
        if self._cursor.problem is not None:
            self._fail(f"audit entry {self._cursor.broken_seq}: {self._cursor.problem}")
            return
        for seq in sorted(self._cursor.watch):
            if seq > self._cursor.seq:
                self._fail(f"the audit log ends at entry {self._cursor.seq} but reached entry "
                           f"{seq} (the audit head file): truncated")
                return
        if not self._has_baseline:  # a log from before baselines: trust the table once
            self._audit.append_audit(sealing_events(self._lifecycle.list_states(),
                                                    self._cursor.seq + 1)[1:])
            self._catch_up()

    def _fold(self, entries: Sequence[AuditEntry]) -> None:
        for entry in entries:
            if entry.action not in LIFECYCLE_ACTIONS:
                continue
            after = json.loads(entry.after)
            at = datetime.fromisoformat(entry.at)
            if entry.action == BASELINE_ACTION:
                self._has_baseline = True
                self._states = {(str(m), int(v)): VersionState(str(m), int(v), Stage(s), at,
                                                               entry.actor)
                                for m, v, s in after["states"]}
            elif "model" in after:
                key = (str(after["model"]), int(after["version"]))
                self._states[key] = VersionState(key[0], key[1], Stage(after["stage"]), at,
                                                 entry.actor)

    def _fail(self, problem: str) -> None:
        if self._report.problem is None:
            log.error("audit log broken, deployments frozen: %s", problem)
        self._report = replace(self._report, problem=problem, checked_seq=self._cursor.seq)

    def _repair_stages(self, drift: list[StageDrift]) -> None:
        log.warning("stage rows changed behind greenbutton's back, put back: %s", drift)
        events = [AuditEvent("greenbutton", "lifecycle.repair", f"model:{d.model}/{d.version}",
                             before=d.stored.value,
                             after={"model": d.model, "version": d.version,
                                    "stage": d.governed.value}) for d in drift]
        self._lifecycle.restore_stages([(d.model, d.version, d.governed) for d in drift],
                                       events=events)
        self._report = replace(self._report, repaired_stages=tuple(drift))

    def _repair_aliases(self, registry: Registry) -> None:
        drift = registry.mirror_drift()
        if not drift:
            return
        log.warning("MLflow aliases changed behind greenbutton's back, put back: %s", drift)
        for model in sorted({d.model for d in drift}):
            registry.sync_mirror(model)
        self._audit.append_audit([
            AuditEvent("greenbutton", "registry.repair", f"model:{d.model}",
                       before={"alias": d.alias, "version": d.mlflow_version},
                       after={"alias": d.alias, "version": d.lifecycle_version})
            for d in drift])
        self._report = replace(self._report, repaired_aliases=tuple(drift))
