"""The payload log's tables, and the alembic chain that creates and changes them.

They live in their own database (``monitoring.payload_store_uri``), apart from greenbutton's
lifecycle store: they grow with traffic and are written by every serving replica. Requests
are logged in batches, one row per batch and a slim row per request (see
:mod:`.payload_batches`); their column names are stored once per distinct set, in
``gb_input_columns`` (see :mod:`.input_columns`). Stores written before batches keep their
rows in ``gb_predictions``, one per request: read, exported and pruned, never written again.

Like greenbutton's store (``store/migrate.py``), the schema changes only through alembic
revisions (``payload_migrations/``), recorded in ``greenbutton_payload_alembic_version`` (the
database may be shared). :func:`migrate` runs on every open; a store already at :data:`HEAD`
is recognised with one query and without importing alembic (a serving process's cold start).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from .input_columns import KEY_CHARS

VERSION_TABLE = "greenbutton_payload_alembic_version"
VERSIONS = Path(__file__).parent / "payload_migrations"
HEAD = "p0001"
"""The newest revision in ``payload_migrations/`` (a test checks it against alembic's head)."""
LOCK_KEY = 0x6762_7061_796C_6F67  # "gbpaylog": PostgreSQL advisory lock while migrating

metadata = MetaData()

payload_batches = Table(
    "gb_payload_batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=True),
    Column("requests", Integer, nullable=False),
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("body", LargeBinary, nullable=False),  # payload_batches.encode
    sqlite_autoincrement=True,  # ids never reused: a larger id is a newer batch
)
"""Logged requests, a batch of one model version per row (see :mod:`.payload_batches`)."""

batches_by_version = Index("ix_gb_payload_batches_version", payload_batches.c.model_name,
                           payload_batches.c.model_version, payload_batches.c.id)
"""A version's newest batches (drift windows) without scanning other versions'."""

batch_sizes = Index("ix_gb_payload_batches_sizes", payload_batches.c.id,
                    payload_batches.c.requests)
"""The count limit of :meth:`PayloadStore.prune` sums every batch's size: from this index
alone, not from the table, where each row carries the start of its body (about a page)."""

payload_requests = Table(
    "gb_payload_requests", metadata,
    Column("batch_id", Integer, primary_key=True),
    Column("position", Integer, primary_key=True),  # the request's index in its batch
    Column("request_id", String(128), nullable=False, index=True),
    sqlite_with_rowid=False,  # the key is the table: one B-tree, not a table and an index
)
"""Where each logged request is: feedback finds a request by its id. No foreign key: a
batch and its requests are deleted together (:meth:`PayloadStore.prune`)."""

predictions = Table(
    "gb_predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),  # {"columns_key", "data"}; before: {"columns", …}
    Column("predictions", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("has_outlier", Boolean, nullable=False),
    Column("latency_s", Float, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)
"""Requests logged one row each, before batches: read and pruned, no longer written."""

predictions_by_version = Index("ix_gb_predictions_version", predictions.c.model_name,
                               predictions.c.model_version, predictions.c.id)
"""A version's newest rows (drift windows fill from them) without scanning other versions'
rows: on 200 k rows, 0.5 ms against 38-55 ms for a version with few rows. Added after the
table first shipped, so it is also created (``IF NOT EXISTS``) on stores made before it; on
a large store that first open takes a while, once."""

input_columns = Table(
    "gb_input_columns", metadata,
    Column("key", String(KEY_CHARS), primary_key=True),  # column_set_key(columns)
    Column("columns", JSON, nullable=False),
)
"""Each distinct set of column names of the payload log, once; added after ``gb_predictions``
first shipped, so stores made before it get it (empty) on open. Never pruned: one short row
per set, and old rows of every age may refer to it."""

feedback = Table(
    "gb_feedback", metadata,
    Column("request_id", String(128), primary_key=True),
    Column("model_name", String(100), nullable=False),
    Column("model_version", String(20), nullable=True),
    Column("truth", JSON, nullable=True),
    Column("reward", Float, nullable=True),
    Column("is_correct", Boolean, nullable=True),  # every row right
    Column("abs_error", Float, nullable=True),  # mean over the rows
    Column("received_at", DateTime(timezone=True), nullable=False),
    # added later (on older stores, added when opened; their earlier rows hold NULL):
    Column("rows", Integer, nullable=True),
    Column("correct_rows", Integer, nullable=True),
    Column("outcomes", JSON, nullable=True),  # per row: 1 / 0 right or wrong, or |error|
)
feedback_received_at = Index("ix_gb_feedback_received_at", feedback.c.received_at)
"""Retention deletes old feedback by its time; added after the table first shipped, so it is
also created (``IF NOT EXISTS``) on stores made before it."""

alerts_sent = Table(
    "gb_alerts_sent", metadata,
    Column("model_name", String(100), primary_key=True),
    Column("model_version", String(20), primary_key=True),  # "" for a model without versions
    Column("rule", String(64), primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)
"""When each alert rule last fired for a model version. Every worker and replica that writes
to the store shares it (:meth:`.coordination.Coordination.claim_alert`), so one event alerts,
and starts retraining, once per cooldown rather than once per process."""

drift_tests = Table(
    "gb_drift_tests", metadata,
    Column("model_name", String(100), primary_key=True),
    Column("model_version", String(20), primary_key=True),  # "" for a model without versions
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("newest_id", Integer, nullable=True),  # the newest payload row the snapshot tested
    Column("snapshot", JSON, nullable=True),  # what GET /monitoring answers
)
"""The latest drift test of each model version, and who may run the next one. The workers and
replicas serving a version read the same window (the version's newest logged rows), so one of
them tests it per interval (:meth:`.coordination.Coordination.claim_drift_test`) and the
others publish the snapshot it stores."""


def migrate(engine: Engine) -> None:
    """Bring the database behind ``engine`` to :data:`HEAD` (one process at a time; several
    starting at once find it done)."""
    if stored_revision(engine) == HEAD:
        return
    from ..store.migrate import Schema, upgrade_engine  # alembic: only when there is work

    upgrade_engine(engine, Schema(VERSIONS, VERSION_TABLE, LOCK_KEY))


def stored_revision(engine: Engine) -> str | None:
    """The revision the database is at; None before its first migration."""
    try:
        with engine.connect() as connection:
            found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    except SQLAlchemyError:  # no version table yet
        return None
    return None if found is None else str(found[0])
