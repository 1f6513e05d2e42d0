"""The payload log and feedback tables (SQLAlchemy; SQLite by default, PostgreSQL at scale).

They live in their own database (``monitoring.payload_store_uri``), apart from greenbutton's
lifecycle store: they grow with traffic and are written by every serving replica. Append-mostly
tables whose shape only grows, so they are created with ``create_all`` on first use instead of
an alembic chain (a later change of shape would add that chain). Requests are logged in
batches, one row per batch and a slim row per request (see :mod:`.payload_batches`); their
column names are stored once per distinct set, in ``gb_input_columns`` (see
:mod:`.input_columns`). Stores written before batches keep their rows in ``gb_predictions``,
one per request: they are read, exported and pruned with the batches, never written again.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
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
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import ColumnElement

from ..errors import AlreadyExists, NotFound, NotReady
from ..store.engine import DEFAULT_BUSY_TIMEOUT_MS, enter_wal, normalize_uri
from ..store.init_lock import embedded_folder, initialising
from . import payload_batches as payload_batches_format
from .input_columns import KEY_CHARS, InputColumns
from .payload_batches import Requests, as_utc, runs

logger = logging.getLogger(__name__)
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
to the store shares it (:meth:`PayloadStore.claim_alert`), so one event alerts, and starts
retraining, once per cooldown rather than once per process."""

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
them tests it per interval (:meth:`PayloadStore.claim_drift_test`) and the others publish the
snapshot it stores."""

PRUNE_CHUNK_ROWS = 10_000
"""Rows deleted per statement (one transaction each) by :meth:`PayloadStore.prune`."""


class PayloadStoreUnavailable(NotReady):
    """The payload store's database cannot be opened."""


class FeedbackNotFound(NotFound):
    """No logged prediction has that request id."""


class FeedbackExists(AlreadyExists):
    """That request already has feedback (send ``replace=true`` to overwrite it)."""


@dataclass(frozen=True)
class LoggedPrediction:
    """One logged request/response."""

    request_id: str
    model_name: str
    model_version: str | None
    inputs: dict[str, Any]
    """``{"columns": [...], "data": [[...], ...]}`` (pandas' ``split`` orientation)."""
    predictions: list[Any]
    annotations: dict[str, list[Any]]
    received_at: datetime.datetime


@dataclass(frozen=True)
class RecentPrediction:
    """One logged request as a drift window reads it."""

    id: int
    """The log's row id: larger is newer (a window with the same newest id is unchanged)."""
    inputs: dict[str, Any]
    """``{"columns": [...], "data": [[...], ...]}``."""
    predictions: Any
    annotations: dict[str, list[Any]]
    latency_s: float


@dataclass(frozen=True)
class RecentFeedback:
    """A version's newest labelled rows: their truths and outcomes (1 / 0 or |error|)."""

    truths: list[Any]
    outcomes: list[float]


@dataclass(frozen=True)
class FeedbackSummary:
    """Live quality of one model version from its feedback."""

    model_name: str
    model_version: str | None
    count: int
    accuracy: float | None
    mean_abs_error: float | None
    mean_reward: float | None


class PayloadStore:
    """Writes and reads the payload log and feedback tables at ``uri``."""

    def __init__(self, uri: str) -> None:
        # orjson, with the settings batch bodies are encoded with (JSON_OPTIONS, _plain):
        # numpy values written natively, and reading old rows' columns at a fifth of the cost
        self.engine: Engine = create_engine(normalize_uri(uri), json_serializer=encode_json,
                                            json_deserializer=decode_json)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            if self.engine.url.database not in (None, "", ":memory:"):  # its folder, private
                Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True,
                                                            mode=0o700)
        try:
            with initialising(embedded_folder(uri)):  # one process creates or updates the tables
                metadata.create_all(self.engine)
                _add_missing_columns(self.engine, feedback, ("rows", "correct_rows", "outcomes"))
                _add_missing_index(self.engine, feedback_received_at)
                _add_missing_index(self.engine, predictions_by_version)
                _continue_row_ids(self.engine)
        except OperationalError as error:
            raise PayloadStoreUnavailable(f"cannot open the payload store: {error.orig}") from None
        # built before serving workers fork: leave no pooled connection to be shared by them
        self.engine.dispose()
        self._requests = BulkInsert.for_dialect(payload_requests, self.engine.dialect)
        self._columns = InputColumns(input_columns)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def write_predictions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Log payload rows (dicts with the ``gb_predictions`` columns) in one transaction."""
        self.write_prepared(self.prepare_predictions(rows))

    def prepare_predictions(self, rows: Sequence[dict[str, Any]]) -> list[PreparedBatch]:
        """``rows`` as :meth:`prepare_batch` prepares them, one batch per run of rows of one
        model version."""
        return [self.prepare_batch(rows[start]["model_name"], rows[start]["model_version"],
                                   Requests.from_rows(rows[start:stop]))
                for start, stop in runs(rows, _version_of)]

    def prepare_batch(self, model_name: str, model_version: str | None,
                      requests: Requests) -> PreparedBatch:
        """A version's ``requests`` encoded as a batch (column names by key), not written; no
        database access.

        The encoding is the CPU-bound part of a write that needs the interpreter lock:
        callers that share the interpreter with a request loop run it there in small
        chunks, and only :meth:`write_prepared` (compression and the driver's own work,
        which release the lock) in a thread.
        """
        keys, column_sets = self._columns.keys(requests.inputs)
        return PreparedBatch(
            model_name=model_name, model_version=model_version,
            request_ids=requests.request_ids,
            first_received_at=as_utc(min(requests.received_at)),
            last_received_at=as_utc(max(requests.received_at)),
            encoded=payload_batches_format.encode(requests, keys, _plain, JSON_OPTIONS),
            column_sets=column_sets)

    def write_prepared(self, prepared: Sequence[PreparedBatch]) -> None:
        """Insert prepared batches in one transaction, with the column sets they introduce."""
        if not prepared:
            return
        column_sets = {k: v for batch in prepared for k, v in batch.column_sets.items()}
        with self.engine.begin() as connection:
            self._columns.register(connection, column_sets)
            for batch in prepared:
                batch_id = connection.execute(
                    insert(payload_batches).returning(payload_batches.c.id),
                    [{"model_name": batch.model_name, "model_version": batch.model_version,
                      "requests": len(batch.request_ids),
                      "body": payload_batches_format.pack(batch.encoded),
                      "first_received_at": batch.first_received_at,
                      "last_received_at": batch.last_received_at}]).scalar_one()
                located = [(batch_id, i, request_id)
                           for i, request_id in enumerate(batch.request_ids)]
                if self._requests is None:
                    connection.execute(insert(payload_requests), [
                        dict(zip(("batch_id", "position", "request_id"), row, strict=True))
                        for row in located])
                    continue
                for statement, parameters in self._requests.statements(located):
                    connection.exec_driver_sql(statement, parameters)
        self._columns.remember(column_sets)  # only now: a rolled-back set is registered again

    def find_prediction(self, request_id: str) -> LoggedPrediction | None:
        """The latest logged prediction with ``request_id``."""
        where = (select(payload_requests.c.batch_id, payload_requests.c.position)
                 .where(payload_requests.c.request_id == request_id)
                 .order_by(payload_requests.c.batch_id.desc(),
                           payload_requests.c.position.desc()).limit(1))
        with self.engine.connect() as connection:
            located = connection.execute(where).first()
            if located is not None:
                row = connection.execute(select(payload_batches).where(
                    payload_batches.c.id == located.batch_id)).first()
                if row is not None:
                    batch, i = payload_batches_format.decode(row.body), located.position
                    return LoggedPrediction(
                        request_id, row.model_name, row.model_version,
                        self._inputs(connection, batch, i), batch.value("predictions", i),
                        batch.value("annotations", i), batch.received_at(i))
            return self._find_in_rows(connection, request_id)

    def _find_in_rows(self, connection: Connection, request_id: str) -> LoggedPrediction | None:
        """:meth:`find_prediction` in the rows logged before batches."""
        query = (select(predictions).where(predictions.c.request_id == request_id)
                 .order_by(predictions.c.id.desc()).limit(1))
        row = connection.execute(query).mappings().first()
        if row is None:
            return None
        inputs = self._columns.inline(connection, row["inputs"], row["request_id"])
        return LoggedPrediction(row["request_id"], row["model_name"], row["model_version"],
                                inputs, row["predictions"], row["annotations"],
                                as_utc(row["received_at"]))

    def _inputs(self, connection: Connection, batch: payload_batches_format.Batch,
                i: int) -> dict[str, Any]:
        """Request ``i`` of ``batch``'s inputs, names inline (split orientation)."""
        return {"columns": self._columns.names(connection, batch.columns_key(i),
                                               batch.request_id(i)),
                "data": batch.value("data", i)}

    def save_feedback(self, values: dict[str, Any], *, replace: bool) -> None:
        """Insert (or with ``replace``, overwrite) the feedback row; committed on return."""
        with self.engine.begin() as connection:
            try:
                with connection.begin_nested():
                    connection.execute(insert(feedback), [values])
                return
            except IntegrityError:
                if not replace:
                    raise FeedbackExists(f"request {values['request_id']!r} already has "
                                         "feedback; send replace=true to overwrite it") from None
            connection.execute(update(feedback)
                               .where(feedback.c.request_id == values["request_id"])
                               .values(values))

    def claim_alert(self, model_name: str, model_version: str | None, rule: str,
                    cooldown_s: float, *, now: datetime.datetime | None = None) -> bool:
        """Whether the caller may send ``rule``'s alert for this version now; if so, the time
        is recorded. Among all the processes sharing the store, one caller per ``cooldown_s``
        gets True: the others see the recorded time (or lose the race to insert it).
        """
        key = {**_version_key(model_name, model_version), "rule": rule}
        return self._claim(alerts_sent, key, "sent_at", cooldown_s, now)

    def claim_drift_test(self, model_name: str, model_version: str | None, interval_s: float,
                         *, now: datetime.datetime | None = None) -> bool:
        """Whether the caller should test this version's drift window now: one caller per
        ``interval_s`` among all the processes sharing the store gets True (as
        :meth:`claim_alert`); the others read the result with :meth:`drift_snapshot`."""
        return self._claim(drift_tests, _version_key(model_name, model_version), "claimed_at",
                           interval_s, now)

    def _claim(self, table: Table, key: dict[str, str], time_column: str, cooldown_s: float,
               now: datetime.datetime | None) -> bool:
        """Renew ``table``'s row at ``key`` if its time is ``cooldown_s`` old, or insert it;
        whether this caller did (a concurrent caller that loses gets False)."""
        now = as_utc(now or utc_now())
        where = _matching(table, key)
        due = table.c[time_column] <= now - datetime.timedelta(seconds=cooldown_s)
        with self.engine.begin() as connection:
            # on PostgreSQL a concurrent claim waits for this row, then finds it not due
            renewed = connection.execute(update(table).where(*where, due)
                                         .values({time_column: now}))
            if renewed.rowcount == 1:
                return True
            try:
                with connection.begin_nested():
                    connection.execute(insert(table).values({**key, time_column: now}))
            except IntegrityError:  # claimed within the cooldown, or a moment ago
                return False
        return True

    def save_drift_snapshot(self, model_name: str, model_version: str | None, newest_id: int,
                            snapshot: dict[str, Any]) -> None:
        """Store a drift test's snapshot (``GET /monitoring``'s body) and the newest payload
        row it tested, for the other processes serving the version."""
        key = _version_key(model_name, model_version)
        where = _matching(drift_tests, key)
        values = {"newest_id": newest_id, "snapshot": snapshot}
        with self.engine.begin() as connection:
            if connection.execute(update(drift_tests).where(*where).values(values)).rowcount:
                return
            try:  # tested without a claim (GET /monitoring?refresh=1 before any interval)
                with connection.begin_nested():
                    connection.execute(insert(drift_tests).values(
                        {**key, **values, "claimed_at": as_utc(utc_now())}))
            except IntegrityError:  # claimed a moment ago by another process
                connection.execute(update(drift_tests).where(*where).values(values))

    def drift_snapshot(self, model_name: str, model_version: str | None
                       ) -> tuple[int, dict[str, Any]] | None:
        """The newest payload row id and snapshot of the version's latest stored drift test."""
        query = select(drift_tests.c.newest_id, drift_tests.c.snapshot).where(
            *_matching(drift_tests, _version_key(model_name, model_version)))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        return int(row[0]), dict(row[1])

    def summaries(self) -> list[FeedbackSummary]:
        """Count, accuracy and mean absolute error (over rows), and mean reward (over
        feedback) per model version; feedback stored before rows were counted is one row."""
        rows = func.coalesce(feedback.c.rows, 1)
        right = func.coalesce(feedback.c.correct_rows, func.cast(feedback.c.is_correct, Integer))
        labelled = func.sum(case((feedback.c.is_correct.is_not(None), rows), else_=0))
        measured = func.sum(case((feedback.c.abs_error.is_not(None), rows), else_=0))
        query = select(feedback.c.model_name, feedback.c.model_version, func.count(),
                       func.sum(right), labelled, func.sum(feedback.c.abs_error * rows),
                       measured, func.avg(feedback.c.reward)
                       ).group_by(feedback.c.model_name, feedback.c.model_version)
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        return [FeedbackSummary(r[0], r[1], int(r[2]), _ratio(r[3], r[4]), _ratio(r[5], r[6]),
                                _float(r[7])) for r in found]

    def recent_feedback(self, model_name: str, model_version: str | None, rows: int
                        ) -> RecentFeedback:
        """The truths and per-row outcomes of a version's newest feedback, at least ``rows``
        rows of it when there are (whole feedbacks, newest first; label and performance
        drift)."""
        query = (select(feedback.c.truth, feedback.c.outcomes, feedback.c.is_correct,
                        feedback.c.abs_error)
                 .where(feedback.c.model_name == model_name,
                        feedback.c.model_version == model_version,
                        feedback.c.truth.is_not(None))
                 .order_by(feedback.c.received_at.desc())
                 .execution_options(yield_per=100))
        truths: list[Any] = []
        outcomes: list[float] = []
        with self.engine.connect() as connection, connection.execute(query) as result:
            for truth, stored, is_correct, abs_error in result:
                if len(truths) >= rows:
                    break
                truths.extend(np.ravel(np.asarray(truth, dtype=object)).tolist())
                outcomes.extend(_outcomes(stored, is_correct, abs_error))
        return RecentFeedback(truths, outcomes)

    def recent_predictions(self, model_name: str, model_version: str | None,
                           limit: int) -> list[RecentPrediction]:
        """The newest ``limit`` logged requests of a version, oldest first, whichever worker
        or replica logged them (drift windows)."""
        query = (select(payload_batches.c.id, payload_batches.c.body)
                 .where(payload_batches.c.model_name == model_name,
                        payload_batches.c.model_version == model_version)
                 .order_by(payload_batches.c.id.desc())
                 .limit(limit)  # each batch holds at least one request
                 .execution_options(yield_per=4))  # PostgreSQL: fetched as they are read
        newest_first: list[list[RecentPrediction]] = []
        found = 0
        with self.engine.connect() as connection:
            with connection.execute(query) as result:
                for batch_id, body in result:
                    if found >= limit:
                        break
                    batch = payload_batches_format.decode(body)
                    newest_first.append([
                        RecentPrediction(batch_id, self._inputs(connection, batch, i),
                                         batch.value("predictions", i),
                                         batch.value("annotations", i),
                                         batch.value("latency_s", i))
                        for i in range(len(batch))])
                    found += len(batch)
            if found < limit:
                newest_first.append(self._recent_rows(connection, model_name, model_version,
                                                      limit - found))
        logged = [entry for part in reversed(newest_first) for entry in part]
        return logged[-limit:] if limit > 0 else []

    def _recent_rows(self, connection: Connection, model_name: str, model_version: str | None,
                     limit: int) -> list[RecentPrediction]:
        """:meth:`recent_predictions` in the rows logged before batches (oldest first)."""
        query = (select(predictions.c.id, predictions.c.request_id, predictions.c.inputs,
                        predictions.c.predictions, predictions.c.annotations,
                        predictions.c.latency_s)
                 .where(predictions.c.model_name == model_name,
                        predictions.c.model_version == model_version)
                 .order_by(predictions.c.id.desc()).limit(limit))
        found = [RecentPrediction(row.id, self._columns.inline(connection, row.inputs,
                                                               row.request_id),
                                  row.predictions, row.annotations, row.latency_s)
                 for row in connection.execute(query).all()]
        found.reverse()
        return found

    def iter_joined(self, model_name: str, since: datetime.datetime) -> Iterator[dict[str, Any]]:
        """Logged requests of ``model_name`` received since ``since``, oldest first, each with
        its feedback's truth and reward (None without feedback)."""
        since = as_utc(since)
        yield from self._joined_rows(model_name, since)
        query = (select(payload_batches)
                 .where(payload_batches.c.model_name == model_name,
                        payload_batches.c.last_received_at >= since)
                 .order_by(payload_batches.c.id)
                 .execution_options(yield_per=20))  # PostgreSQL: a server-side cursor
        with self.engine.connect() as connection, connection.execute(query) as result:
            for row in result:
                batch = payload_batches_format.decode(row.body)
                wanted = [i for i in range(len(batch)) if batch.received_at(i) >= since]
                feedback_of = self._feedback_of(connection,
                                                [batch.request_id(i) for i in wanted])
                for i in wanted:
                    truth, reward = feedback_of.get(batch.request_id(i), (None, None))
                    yield {"request_id": batch.request_id(i), "model_name": row.model_name,
                           "model_version": row.model_version,
                           "endpoint": batch.value("endpoints", i),
                           "inputs": self._inputs(connection, batch, i),
                           "predictions": batch.value("predictions", i),
                           "annotations": batch.value("annotations", i),
                           "has_outlier": batch.value("has_outlier", i),
                           "latency_s": batch.value("latency_s", i),
                           "received_at": batch.received_at(i), "truth": truth,
                           "reward": reward}

    def _feedback_of(self, connection: Connection, request_ids: list[str]
                     ) -> dict[str, tuple[Any, Any]]:
        """Truth and reward of the feedback these requests have (looked up 1,000 ids at a
        time: a batch written by :meth:`write_predictions` may hold more ids than SQLite
        takes parameters)."""
        found: dict[str, tuple[Any, Any]] = {}
        for start in range(0, len(request_ids), 1000):
            query = select(feedback.c.request_id, feedback.c.truth, feedback.c.reward).where(
                feedback.c.request_id.in_(request_ids[start:start + 1000]))
            found.update((row[0], (row[1], row[2])) for row in connection.execute(query))
        return found

    def _joined_rows(self, model_name: str, since: datetime.datetime
                     ) -> Iterator[dict[str, Any]]:
        """:meth:`iter_joined` over the rows logged before batches."""
        query = (select(*[c for c in predictions.columns if c.name != "id"], feedback.c.truth,
                        feedback.c.reward)
                 .join(feedback, feedback.c.request_id == predictions.c.request_id, isouter=True)
                 .where(predictions.c.model_name == model_name,
                        predictions.c.received_at >= since)
                 .order_by(predictions.c.id)
                 .execution_options(yield_per=1000))  # PostgreSQL: a server-side cursor
        with self.engine.connect() as connection, connection.execute(query) as result:
            for row in result.mappings():
                joined = dict(row)
                joined["inputs"] = self._columns.inline(connection, row["inputs"],
                                                        row["request_id"])
                joined["received_at"] = as_utc(row["received_at"])
                yield joined

    def prune(self, older_than: datetime.datetime, max_rows: int, *,
              chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
              should_stop: Callable[[], bool] | None = None) -> int:
        """Delete the logged requests received before ``older_than`` and all but the newest
        ``max_rows`` (0: no limit); return how many were deleted. Column sets stay (one short
        row each, see :data:`input_columns`).

        Requests go a batch at a time (see :mod:`.payload_batches`): a batch is deleted once
        all its requests are older than ``older_than``, and the batch that would leave more
        than ``max_rows`` requests is deleted whole, so at most ``max_rows`` remain, fewer by
        less than a batch (a flush's requests). Batches go in chunks of up to ``chunk_rows``
        requests, each chunk its own short transaction, with a pause after each
        (``pause_s``; None: as long as the chunk took) so that on SQLite the payload writers
        of the serving processes get the write lock in between. Safe to run from several
        processes at once: a request deleted by another pruner is not counted again
        (PostgreSQL: each pruner skips the batches another is deleting).

        Rows logged one per request before batches are pruned by the same rules, after the
        batches: they are older than any batch.
        """
        cutoff = as_utc(older_than)
        deleted = self._delete_batches(payload_batches.c.last_received_at < cutoff,
                                       chunk_rows, pause_s, should_stop)
        deleted += self._delete_chunks(predictions, predictions.c.id,
                                       predictions.c.received_at < cutoff,
                                       chunk_rows, pause_s, should_stop)
        if max_rows <= 0 or (should_stop and should_stop()):
            return deleted
        newer = func.sum(payload_batches.c.requests).over(order_by=payload_batches.c.id.desc())
        counted = select(payload_batches.c.id, newer.label("newer")).subquery()
        with self.engine.connect() as connection:
            beyond = connection.execute(select(func.max(counted.c.id))
                                        .where(counted.c.newer > max_rows)).scalar()
            in_batches = connection.execute(
                select(func.coalesce(func.sum(payload_batches.c.requests), 0))).scalar_one()
            newest_row = connection.execute(select(func.max(predictions.c.id))).scalar()
        if beyond is not None:
            deleted += self._delete_batches(payload_batches.c.id <= beyond, chunk_rows,
                                            pause_s, should_stop)
        room = max_rows - int(in_batches)  # what the rows before batches may keep
        if newest_row is not None and newest_row > room and not (should_stop and should_stop()):
            deleted += self._delete_chunks(predictions, predictions.c.id,
                                           predictions.c.id <= newest_row - max(room, 0),
                                           chunk_rows, pause_s, should_stop)
        return deleted

    def _delete_batches(self, condition: ColumnElement[bool], chunk_rows: int,
                        pause_s: float | None, should_stop: Callable[[], bool] | None) -> int:
        """Delete the batches matching ``condition`` and their requests, in chunks of up to
        ``chunk_rows`` requests (at least one batch); how many requests were deleted."""
        chosen = (select(payload_batches.c.id, payload_batches.c.requests).where(condition)
                  .order_by(payload_batches.c.id).limit(chunk_rows))
        if self.engine.dialect.name == "postgresql":  # concurrent pruners take other batches
            chosen = chosen.with_for_update(skip_locked=True)
        deleted = 0
        while not (should_stop and should_stop()):
            started = time.perf_counter()
            with self.engine.begin() as connection:
                found = connection.execute(chosen).all()
                ids: list[int] = []
                requests = 0
                for batch_id, count in found:
                    if ids and requests + count > chunk_rows:
                        break
                    ids.append(batch_id)
                    requests += count
                if not ids:
                    break
                # what this pruner deleted: another may have taken some of them meanwhile
                gone = connection.execute(delete(payload_batches)
                                          .where(payload_batches.c.id.in_(ids))
                                          .returning(payload_batches.c.id,
                                                     payload_batches.c.requests)).all()
                connection.execute(delete(payload_requests).where(
                    payload_requests.c.batch_id.in_([row[0] for row in gone])))
            deleted += sum(row[1] for row in gone)
            if len(ids) == len(found) < chunk_rows:  # nothing left to choose
                break
            time.sleep(time.perf_counter() - started if pause_s is None else pause_s)
        return deleted

    def prune_feedback(self, older_than: datetime.datetime, *,
                       chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
                       should_stop: Callable[[], bool] | None = None) -> int:
        """Delete feedback received before ``older_than`` (chunked as :meth:`prune`)."""
        return self._delete_chunks(feedback, feedback.c.request_id,
                                   feedback.c.received_at < as_utc(older_than),
                                   chunk_rows, pause_s, should_stop)

    def _delete_chunks(self, table: Table, key: Column[Any], condition: ColumnElement[bool],
                       chunk_rows: int, pause_s: float | None,
                       should_stop: Callable[[], bool] | None) -> int:
        chosen = select(key).where(condition).limit(chunk_rows)
        if self.engine.dialect.name == "postgresql":  # concurrent pruners take other rows
            chosen = chosen.with_for_update(skip_locked=True)
        statement = delete(table).where(key.in_(chosen.scalar_subquery()))
        deleted = 0
        while not (should_stop and should_stop()):
            started = time.perf_counter()
            with self.engine.begin() as connection:
                count = connection.execute(statement).rowcount
            deleted += count
            if count < chunk_rows:
                break
            time.sleep(time.perf_counter() - started if pause_s is None else pause_s)
        return deleted


@dataclass(frozen=True)
class PreparedBatch:
    """A batch of logged requests of one model version, encoded and ready to insert, with
    the column sets (by key) it introduces that were not yet known to be stored."""

    model_name: str
    model_version: str | None
    request_ids: list[str]
    first_received_at: datetime.datetime
    last_received_at: datetime.datetime
    encoded: bytes
    """The batch's JSON (:func:`.payload_batches.encode`), packed when written."""
    column_sets: dict[str, list[Any]] = field(default_factory=dict)


class BulkInsert:
    """Many rows in a few multi-row ``INSERT … VALUES (…), (…)`` statements.

    A flush logs a few hundred requests, each a ``gb_payload_requests`` row of three plain
    values (text and integers: no bind processing). SQLAlchemy's executemany spends ~10 µs of
    Python per row, and the driver releases and retakes the interpreter lock for every row;
    here a statement carries up to ``rows_per_statement`` rows.
    """

    MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
    """Positional placeholder per DBAPI paramstyle (sqlite3: qmark; psycopg: pyformat)."""

    def __init__(self, table: Table, dialect: Dialect, mark: str,
                 rows_per_statement: int = 500) -> None:
        self.names = [c.name for c in table.columns]
        quote = dialect.identifier_preparer.quote
        self.head = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in self.names)})"
                     " VALUES ")
        self.group = "(" + ", ".join([mark] * len(self.names)) + ")"
        self.rows_per_statement = rows_per_statement

    @classmethod
    def for_dialect(cls, table: Table, dialect: Dialect) -> BulkInsert | None:
        """A bulk insert for ``dialect``, or None when its paramstyle is not positional."""
        mark = cls.MARKS.get(dialect.paramstyle)
        return cls(table, dialect, mark) if mark is not None else None

    def statements(self, rows: Sequence[Sequence[Any]]
                   ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(SQL, parameters) pairs inserting ``rows`` (values in the table's column order)."""
        for start in range(0, len(rows), self.rows_per_statement):
            chunk = rows[start:start + self.rows_per_statement]
            yield (self.head + ", ".join([self.group] * len(chunk)),
                   tuple(itertools.chain.from_iterable(chunk)))


JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_json(value: Any) -> str:
    """A JSON column's text: numpy arrays and scalars written natively (NaN → null)."""
    return orjson.dumps(value, default=_plain, option=JSON_OPTIONS).decode()


def decode_json(text: str | bytes) -> Any:
    """A JSON column's value: orjson (a fifth of the stdlib's time; export reads millions),
    and the stdlib for the NaN and Infinity that versions before orjson wrote, which orjson
    refuses. (orjson reads an integer beyond 64 bits as a float; :func:`encode_json` never
    writes one, it refuses them.)"""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _plain(value: Any) -> Any:
    # orjson calls this for what it cannot write itself: object or non-contiguous arrays,
    # pandas containers and timestamps
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if hasattr(value, "to_numpy"):
        return value.to_numpy()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _version_of(row: Mapping[str, Any]) -> tuple[str, str | None]:
    return row["model_name"], row["model_version"]


def _version_key(model_name: str, model_version: str | None) -> dict[str, str]:
    """A model version as the key columns of the claim tables ("" for no version)."""
    return {"model_name": model_name, "model_version": model_version or ""}


def _matching(table: Table, key: dict[str, str]) -> list[ColumnElement[bool]]:
    """``table``'s rows with these ``key`` column values."""
    return [table.c[name] == value for name, value in key.items()]


def utc_now() -> datetime.datetime:
    """The current time in UTC."""
    return datetime.datetime.now(datetime.UTC)


def _add_missing_index(engine: Engine, index: Index) -> None:
    """Create ``index`` on a table made before it existed; a role that may not (not the
    table's owner) leaves it missing: pruning feedback or reading a drift window then scans
    the table, nothing fails."""
    table = index.table
    assert table is not None
    with engine.connect() as connection:
        names = {i["name"] for i in inspect(connection).get_indexes(table.name)}
    if index.name in names:
        return
    try:
        with engine.begin() as connection:
            connection.execute(CreateIndex(index, if_not_exists=True))
    except SQLAlchemyError as error:
        logger.warning("cannot add index %s to %s (%s); pruning old feedback will scan the "
                       "table", index.name, table.name, getattr(error, "orig", error))


def _continue_row_ids(engine: Engine) -> None:
    """On a store written before batches, number the first batch after the last row.

    A drift snapshot records the newest id it tested, and workers adopt a stored snapshot
    only if that id is larger than their own: the ids of requests logged after an upgrade
    must go on increasing. A role that may not set the sequence (PostgreSQL, not its owner)
    leaves it as it is: workers then keep their own snapshot a little longer after the
    upgrade, until the batch ids pass the rows' ids.
    """
    with engine.connect() as connection:
        if connection.execute(select(payload_batches.c.id).limit(1)).first() is not None:
            return
        newest = connection.execute(select(func.max(predictions.c.id))).scalar()
    if newest is None:
        return
    name = payload_batches.name
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "sqlite":  # AUTOINCREMENT: the next id is seq + 1
                connection.exec_driver_sql(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM sqlite_sequence WHERE name = ?)", (name, newest, name))
            elif engine.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                    f"GREATEST(%s, (SELECT COALESCE(MAX(id), 1) FROM {name})))",
                    (name, newest))
    except SQLAlchemyError as error:
        logger.warning("cannot number payload batches after the %d rows logged before them "
                       "(%s)", newest, getattr(error, "orig", error))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _ratio(total: Any, count: Any) -> float | None:
    return None if total is None or not count else float(total) / float(count)


def _outcomes(stored: Any, is_correct: bool | None, abs_error: float | None) -> list[float]:
    """A feedback's per-row outcomes; one for feedback stored before they were."""
    if isinstance(stored, list):
        return [float(v) for v in stored]
    if is_correct is not None:
        return [1.0 if is_correct else 0.0]
    return [] if abs_error is None else [float(abs_error)]


def _add_missing_columns(engine: Engine, table: Table, names: Sequence[str]) -> None:
    """Add nullable ``names`` to ``table`` on a store made before they existed; a role that
    may not leaves them missing, and writing feedback then fails (with an error naming the
    column, so the owner can add it)."""
    with engine.connect() as connection:
        present = {c["name"] for c in inspect(connection).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        kind = table.c[name].type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
        except SQLAlchemyError as error:
            logger.warning("cannot add column %s to %s (%s)", name, table.name,
                           getattr(error, "orig", error))


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={DEFAULT_BUSY_TIMEOUT_MS}")
        enter_wal(cursor, DEFAULT_BUSY_TIMEOUT_MS / 1000)
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()
