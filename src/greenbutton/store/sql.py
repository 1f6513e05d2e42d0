"""``SqlStore``: the lifecycle store on SQLAlchemy (SQLite by default, PostgreSQL at scale).

Every transition is audited (``lifecycle.transition``) in the transaction that applies it:
the audit log is the lifecycle's history, and a stage row without its entry was not written
by greenbutton.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, and_, delete, insert, select, update

from ..errors import StaleState
from .audit_seal import AuditSeal
from .audit_sql import AuditedWriter
from .engine import DEFAULT_BUSY_TIMEOUT_MS, create_store_engine, translate_errors
from .governance_records import AuditEvent
from .migrate import upgrade_engine
from .protocol import Stage, StageChange, Transition, VersionState
from .schema import model_key, transitions, version_stages
from .transition_events import transition_event

if TYPE_CHECKING:
    from .deployment_sql import SqlDeploymentStore
    from .governance_sql import SqlGovernanceStore


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Lifecycle stages and history in SQL tables, migrated to head when opened.

    Usage::

        store = SqlStore("sqlite:///.greenbutton/greenbutton.db")
        store.stage_of("digits", 3)
    """

    def __init__(
        self,
        uri: str,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Callable[[], datetime] = _utcnow,
        seal: AuditSeal | None = None,
    ) -> None:
        self._engine = create_store_engine("sqlite://" if uri.startswith("memory:") else uri,
                                           busy_timeout_ms=busy_timeout_ms)
        self._clock = clock
        self._audited = AuditedWriter(self._engine, seal)
        try:
            upgrade_engine(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    def stage_of(self, model: str, version: int) -> Stage:
        """The version's stage; ``Stage.NONE`` when it was never transitioned."""
        query = select(version_stages.c.stage).where(
            version_stages.c.model_key == model_key(model), version_stages.c.version == version
        )
        with translate_errors(), self._engine.connect() as connection:
            stage = connection.execute(query).scalar_one_or_none()
        return Stage.NONE if stage is None else Stage(stage)

    def list_states(self, model: str | None = None) -> list[VersionState]:
        """Every version with a recorded stage, optionally of one model, by (model, version)."""
        query = select(version_stages)
        if model is not None:
            query = query.where(version_stages.c.model_key == model_key(model))
        return self._states(query)

    def versions_in(self, stage: Stage) -> list[VersionState]:
        """Every version currently in ``stage``, by (model, version)."""
        return self._states(select(version_stages).where(version_stages.c.stage == stage.value))

    def apply_transitions(
        self, changes: list[StageChange], *, actor: str, reason: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> list[Transition]:
        """Apply all changes and their audit entries in one transaction, or none;
        ``StaleState`` if one was raced. ``context`` goes into each entry (e.g. the
        request that approved it)."""
        if not changes:
            return []
        at = self._clock()
        conflict = "a version's stage changed concurrently; reload and retry"
        with self._audited.transaction(conflict) as connection:
            done = [self._apply(connection, change, actor, reason, at) for change in changes]
            self._audited.append(connection, [
                transition_event(t, context) for t in done], at)
        return done

    def restore_stages(self, stages: list[tuple[str, int, Stage]], *, events: list[AuditEvent]
                       ) -> None:
        """Put rows changed behind greenbutton's back back to their governed stage (``NONE``:
        no row), with the audit entries that say so; not a transition: the history keeps
        what greenbutton did."""
        at = self._clock()
        with self._audited.transaction("a version's stage changed concurrently") as connection:
            for model, version, _ in stages:  # all out first: one version per stage
                connection.execute(delete(version_stages).where(
                    version_stages.c.model_key == model_key(model),
                    version_stages.c.version == version))
            for model, version, stage in stages:
                if stage is not Stage.NONE:
                    connection.execute(insert(version_stages).values(
                        model_key=model_key(model), model=model, version=version,
                        stage=stage.value, updated_at=at, updated_by="greenbutton"))
            self._audited.append(connection, events, at)

    def history(self, model: str, version: int | None = None) -> list[Transition]:
        """Transitions of a model (or one version), oldest first."""
        query = select(transitions).where(transitions.c.model_key == model_key(model))
        if version is not None:
            query = query.where(transitions.c.version == version)
        with translate_errors(), self._engine.connect() as connection:
            rows = connection.execute(query.order_by(transitions.c.id)).all()
        return [_transition(row) for row in rows]

    def deployment_store(self) -> SqlDeploymentStore:
        """Deployment specs on this store's engine (table from migration 0002)."""
        from .deployment_sql import SqlDeploymentStore

        return SqlDeploymentStore(self._engine, clock=self._clock, seal=self._audited.seal)

    def governance_store(self) -> SqlGovernanceStore:
        """Identities, requests and the audit log on this store's engine (migration 0003)."""
        from .governance_sql import SqlGovernanceStore

        return SqlGovernanceStore(self._engine, seal=self._audited.seal, clock=self._clock)

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    def _states(self, query: Any) -> list[VersionState]:
        query = query.order_by(version_stages.c.model, version_stages.c.version)
        with translate_errors(), self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_state(row) for row in rows]

    def _apply(
        self,
        connection: Connection,
        change: StageChange,
        actor: str,
        reason: str | None,
        at: datetime,
    ) -> Transition:
        _move(connection, change, actor, at)
        values = {
            "model_key": model_key(change.model),
            "model": change.model,
            "version": change.version,
            "from_stage": change.from_stage.value,
            "to_stage": change.to_stage.value,
            "actor": actor,
            "reason": reason,
            "at": at,
        }
        result = connection.execute(insert(transitions).values(values))
        (transition_id,) = result.inserted_primary_key or (None,)
        assert isinstance(transition_id, int)
        return Transition(
            id=transition_id,
            model=change.model,
            version=change.version,
            from_stage=change.from_stage,
            to_stage=change.to_stage,
            actor=actor,
            reason=reason,
            at=at,
        )


def _move(connection: Connection, change: StageChange, actor: str, at: datetime) -> None:
    """Set the version's stage if it still is ``from_stage``; the row lock makes this race-safe."""
    key = and_(
        version_stages.c.model_key == model_key(change.model),
        version_stages.c.version == change.version,
    )
    moved = connection.execute(
        update(version_stages)
        .where(key, version_stages.c.stage == change.from_stage.value)
        .values(stage=change.to_stage.value, updated_at=at, updated_by=actor)
    )
    if moved.rowcount == 1:
        return
    if change.from_stage is not Stage.NONE:
        raise _stale(change)
    # never transitioned: a concurrent first transition makes this INSERT hit the primary key
    connection.execute(
        insert(version_stages).values(
            model_key=model_key(change.model),
            model=change.model,
            version=change.version,
            stage=change.to_stage.value,
            updated_at=at,
            updated_by=actor,
        )
    )


def _stale(change: StageChange) -> StaleState:
    return StaleState(
        f"version {change.version} of {change.model!r} is no longer in {change.from_stage}"
    )


def _state(row: Row[Any]) -> VersionState:
    return VersionState(
        model=row.model,
        version=row.version,
        stage=Stage(row.stage),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _transition(row: Row[Any]) -> Transition:
    return Transition(
        id=row.id,
        model=row.model,
        version=row.version,
        from_stage=Stage(row.from_stage),
        to_stage=Stage(row.to_stage),
        actor=row.actor,
        reason=row.reason,
        at=row.at,
    )
