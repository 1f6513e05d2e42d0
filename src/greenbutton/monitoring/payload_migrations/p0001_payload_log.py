"""The payload log as first managed by alembic; adopts the stores made before that.

Creates the seven tables and their indexes where they are missing. Stores made before alembic
ran this log already have some of them: there, the columns, indexes and tables added over
time (feedback's per-row outcomes, the version and retention indexes, batches, column sets)
are added, and the first batch is numbered after the last row logged one per request (drift
snapshots compare ids: they must go on increasing). Where the role may not add an index or
set a sequence (PostgreSQL, not the table's owner), that step is skipped with a warning:
pruning feedback or reading a drift window then scans a table, nothing fails.

Revision ID: p0001
Revises:
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SQLAlchemyError

revision = "p0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

log = logging.getLogger("greenbutton.monitoring.payload_schema")
_WHEN = sa.DateTime(timezone=True)
_FEEDBACK_ADDED = (("rows", sa.Integer()), ("correct_rows", sa.Integer()),
                   ("outcomes", sa.JSON()))


def upgrade() -> None:
    """Create what is missing; adopt a store made before alembic."""
    _create_tables()
    bind = op.get_bind()
    present = {c["name"] for c in sa.inspect(bind).get_columns("gb_feedback")}
    for name, kind in _FEEDBACK_ADDED:
        if name not in present:  # a store made before per-row outcomes: NULL in old rows
            op.add_column("gb_feedback", sa.Column(name, kind, nullable=True))
    for name, table, columns in (
        ("ix_gb_payload_batches_last_received_at", "gb_payload_batches", ["last_received_at"]),
        ("ix_gb_payload_batches_version", "gb_payload_batches",
         ["model_name", "model_version", "id"]),
        ("ix_gb_payload_batches_sizes", "gb_payload_batches", ["id", "requests"]),
        ("ix_gb_payload_requests_request_id", "gb_payload_requests", ["request_id"]),
        ("ix_gb_predictions_request_id", "gb_predictions", ["request_id"]),
        ("ix_gb_predictions_received_at", "gb_predictions", ["received_at"]),
        ("ix_gb_predictions_version", "gb_predictions", ["model_name", "model_version", "id"]),
        ("ix_gb_feedback_received_at", "gb_feedback", ["received_at"]),
    ):
        _where_allowed(f"add index {name} to {table}", op.create_index, name, table, columns,
                       if_not_exists=True)
    _where_allowed("number payload batches after the rows logged before them",
                   _continue_row_ids)


def downgrade() -> None:
    """Drop the payload log (every logged request and feedback with it)."""
    for table in ("gb_drift_tests", "gb_alerts_sent", "gb_feedback", "gb_input_columns",
                  "gb_predictions", "gb_payload_requests", "gb_payload_batches"):
        op.drop_table(table)


def _create_tables() -> None:
    op.create_table(
        "gb_payload_batches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("first_received_at", _WHEN, nullable=False),
        sa.Column("last_received_at", _WHEN, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sqlite_autoincrement=True, if_not_exists=True)
    op.create_table(
        "gb_payload_requests",
        sa.Column("batch_id", sa.Integer(), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sqlite_with_rowid=False, if_not_exists=True)
    op.create_table(
        "gb_predictions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("has_outlier", sa.Boolean(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("received_at", _WHEN, nullable=False),
        if_not_exists=True)
    op.create_table(
        "gb_input_columns",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("columns", sa.JSON(), nullable=False),
        if_not_exists=True)
    op.create_table(
        "gb_feedback",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=True),
        sa.Column("truth", sa.JSON(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("is_correct", sa.Boolean(), nullable=True),
        sa.Column("abs_error", sa.Float(), nullable=True),
        sa.Column("received_at", _WHEN, nullable=False),
        *(sa.Column(name, kind, nullable=True) for name, kind in _FEEDBACK_ADDED),
        if_not_exists=True)
    for table in ("gb_alerts_sent", "gb_drift_tests"):
        op.create_table(
            table,
            sa.Column("model_name", sa.String(100), primary_key=True),
            sa.Column("model_version", sa.String(20), primary_key=True),
            *((sa.Column("rule", sa.String(64), primary_key=True),
               sa.Column("sent_at", _WHEN, nullable=False)) if table == "gb_alerts_sent" else
              (sa.Column("claimed_at", _WHEN, nullable=False),
               sa.Column("newest_id", sa.Integer(), nullable=True),
               sa.Column("snapshot", sa.JSON(), nullable=True))),
            if_not_exists=True)


def _where_allowed(what: str, step: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Run ``step``; if the role may not, say so and go on (a savepoint on PostgreSQL keeps
    the migration's transaction usable; SQLite undoes the failed statement only)."""
    try:
        with _savepoint():
            step(*args, **kwargs)
    except SQLAlchemyError as error:
        log.warning("cannot %s (%s)", what, getattr(error, "orig", error))


@contextmanager
def _savepoint() -> Iterator[None]:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        yield
        return
    with bind.begin_nested():
        yield


def _continue_row_ids() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT id FROM gb_payload_batches LIMIT 1")).first() is not None:
        return
    newest = bind.execute(sa.text("SELECT MAX(id) FROM gb_predictions")).scalar()
    if newest is None:
        return
    name = "gb_payload_batches"
    if bind.dialect.name == "sqlite":  # AUTOINCREMENT: the next id is seq + 1
        bind.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS "
            "(SELECT 1 FROM sqlite_sequence WHERE name = ?)", (name, newest, name))
    elif bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            f"GREATEST(%s, (SELECT COALESCE(MAX(id), 1) FROM {name})))", (name, newest))
