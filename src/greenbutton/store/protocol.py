"""What greenbutton keeps in its own store, and the protocol every store backend implements.

MLflow owns runs, artifacts and model versions; this store owns only what MLflow has not:
the lifecycle stage of each version and the history of every transition (later: users,
permissions, approvals, deployment specs, audit).

Usage::

    store = open_store("sqlite:///.greenbutton/greenbutton.db")
    store.apply_transitions([StageChange("digits", 3, Stage.NONE, Stage.PRODUCTION)],
                            actor="alice", reason="first release")
    store.versions_in(Stage.PRODUCTION)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from .governance_records import AuditEvent


class Stage(StrEnum):
    """greenbutton's lifecycle stages (MLflow's classic names, kept in greenbutton's store)."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


EXCLUSIVE_STAGES = frozenset({Stage.PRODUCTION, Stage.STAGING})
"""Stages that at most one version of a model holds at a time (enforced by every store)."""


@dataclass(frozen=True)
class VersionState:
    """The current stage of one model version."""

    model: str
    version: int
    stage: Stage
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class StageChange:
    """One requested change; ``from_stage`` is what the caller believes is current."""

    model: str
    version: int
    from_stage: Stage
    to_stage: Stage


@dataclass(frozen=True)
class Transition:
    """One recorded transition (history is append-only)."""

    id: int
    model: str
    version: int
    from_stage: Stage
    to_stage: Stage
    actor: str
    reason: str | None
    at: datetime


class LifecycleStore(Protocol):
    """Persistence of lifecycle stages and their history."""

    def stage_of(self, model: str, version: int) -> Stage:
        """The version's stage; ``Stage.NONE`` when it was never transitioned."""
        ...

    def list_states(self, model: str | None = None) -> list[VersionState]:
        """Every version with a recorded stage, optionally of one model, by (model, version)."""
        ...

    def versions_in(self, stage: Stage) -> list[VersionState]:
        """Every version currently in ``stage``, by (model, version)."""
        ...

    def apply_transitions(
        self, changes: list[StageChange], *, actor: str, reason: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> list[Transition]:
        """Apply all changes in one transaction, in order, or none, each with its
        ``lifecycle.transition`` audit entry (``context`` added to it).

        Raises ``StaleState`` when a version's current stage differs from ``from_stage``
        (someone else moved it first), or when a change would put a second version of a
        model into one of ``EXCLUSIVE_STAGES`` (move the incumbent out earlier in the batch).
        """
        ...

    def history(self, model: str, version: int | None = None) -> list[Transition]:
        """Transitions of a model (or one version), oldest first."""
        ...

    def restore_stages(self, stages: list[tuple[str, int, Stage]], *,
                       events: list[AuditEvent]) -> None:
        """Put versions changed behind greenbutton's back back to their governed stage
        (``NONE``: no row), with ``events`` in the same transaction; not a transition."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class StoredDeploymentSpec:
    """One deployment spec as stored: a JSON document plus its revision (starts at 1)."""

    name: str
    spec: dict[str, object]
    revision: int
    updated_at: datetime
    updated_by: str


class DeploymentStore(Protocol):
    """Persistence of deployment specs (validated above the store; kept as JSON here).

    Usage::

        saved = specs.put_spec("wine", {"model": "wine", ...}, actor="alice")
        specs.put_spec("wine", {...}, actor="bob", expected_revision=saved.revision)
    """

    def get_spec(self, name: str) -> StoredDeploymentSpec | None:
        """The spec stored under ``name``, if any."""
        ...

    def list_specs(self) -> list[StoredDeploymentSpec]:
        """Every stored spec, by name."""
        ...

    def put_spec(
        self, name: str, spec: dict[str, object], *, actor: str,
        expected_revision: int | None = None, events: Sequence[AuditEvent] = (),
    ) -> StoredDeploymentSpec:
        """Create or replace, with its audit ``events`` in the same transaction;
        ``StaleState`` if ``expected_revision`` (0: must not exist) differs from the stored
        one."""
        ...

    def delete_spec(self, name: str, *, actor: str, expected_revision: int | None = None,
                    events: Sequence[AuditEvent] = ()) -> bool:
        """Remove, with its audit ``events``; False if there was none; ``StaleState`` on a
        revision mismatch."""
        ...
