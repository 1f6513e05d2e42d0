"""``SqlDeploymentStore``: deployment specs in the ``deployment_specs`` table (migration 0002).

It shares the ``SqlStore``'s engine (``SqlStore.deployment_store()``), so one database holds
the lifecycle and the specs. Revisions make concurrent edits fail with ``StaleState``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from ..errors import StaleState
from .audit_seal import AuditSeal
from .audit_sql import AuditedWriter
from .engine import translate_errors
from .governance_records import AuditEvent
from .protocol import StoredDeploymentSpec

_metadata = MetaData()
deployment_specs = Table(
    "deployment_specs",
    _metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text(), nullable=False),
    Column("revision", Integer(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Text(), nullable=False),
)
_CONFLICT = "a deployment spec changed concurrently; reload and retry"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlDeploymentStore:
    """Deployment specs on an already migrated engine."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = _utcnow,
                 seal: AuditSeal | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._audited = AuditedWriter(engine, seal)

    def get_spec(self, name: str) -> StoredDeploymentSpec | None:
        """The spec stored under ``name``, if any."""
        query = select(deployment_specs).where(deployment_specs.c.name == name)
        with translate_errors(), self._engine.connect() as connection:
            row = connection.execute(query).one_or_none()
        return None if row is None else _stored(row)

    def list_specs(self) -> list[StoredDeploymentSpec]:
        """Every stored spec, by name."""
        query = select(deployment_specs).order_by(deployment_specs.c.name)
        with translate_errors(), self._engine.connect() as connection:
            return [_stored(row) for row in connection.execute(query).all()]

    def put_spec(
        self, name: str, spec: dict[str, object], *, actor: str,
        expected_revision: int | None = None, events: Sequence[AuditEvent] = (),
    ) -> StoredDeploymentSpec:
        """Create or replace, with its audit ``events``; ``StaleState`` on a revision
        mismatch or a concurrent create."""
        at, text = self._clock(), json.dumps(spec, sort_keys=True)
        with self._audited.transaction(_CONFLICT) as connection:
            current = _revision(connection, name)
            _check_revision(name, current, expected_revision)
            values = {"spec": text, "updated_at": at, "updated_by": actor}
            if current == 0:  # a concurrent insert hits the primary key -> StaleState
                connection.execute(insert(deployment_specs).values(name=name, revision=1,
                                                                   **values))
            else:
                moved = connection.execute(
                    update(deployment_specs)
                    .where(deployment_specs.c.name == name,
                           deployment_specs.c.revision == current)
                    .values(revision=current + 1, **values)
                )
                if moved.rowcount != 1:
                    raise StaleState(_CONFLICT)
            self._audited.append(connection, events, at)
        return StoredDeploymentSpec(name, json.loads(text), current + 1, at, actor)

    def delete_spec(self, name: str, *, actor: str, expected_revision: int | None = None,
                    events: Sequence[AuditEvent] = ()) -> bool:
        """Remove, with its audit ``events``; False if there was none."""
        with self._audited.transaction(_CONFLICT) as connection:
            current = _revision(connection, name)
            _check_revision(name, current, expected_revision)
            gone = connection.execute(
                delete(deployment_specs).where(deployment_specs.c.name == name)
            )
            if gone.rowcount == 1:
                self._audited.append(connection, events, self._clock())
        return gone.rowcount == 1


def _revision(connection: Connection, name: str) -> int:
    query = select(deployment_specs.c.revision).where(deployment_specs.c.name == name)
    revision = connection.execute(query).scalar_one_or_none()
    return 0 if revision is None else int(revision)


def _check_revision(name: str, current: int, expected: int | None) -> None:
    if expected is not None and current != expected:
        raise StaleState(f"deployment spec {name!r} changed concurrently; reload and retry")


def _stored(row: Row[Any]) -> StoredDeploymentSpec:
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return StoredDeploymentSpec(row.name, json.loads(row.spec), row.revision, at,
                                row.updated_by)
