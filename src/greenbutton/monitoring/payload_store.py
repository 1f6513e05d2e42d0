"""``PayloadStore``: writes and reads the payload log and feedback (SQLAlchemy; SQLite by
default, PostgreSQL at scale). The tables and their migrations are in :mod:`.payload_schema`,
retention in :mod:`.payload_pruning`, the row encoding in :mod:`.payload_encoding`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Integer, case, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..errors import AlreadyExists, NotFound, NotReady
from ..store.engine import DEFAULT_BUSY_TIMEOUT_MS, enter_wal, normalize_uri
from ..store.init_lock import embedded_folder, initialising
from . import payload_batches as payload_batches_format
from . import payload_pruning
from .coordination import Coordination
from .input_columns import InputColumns
from .payload_batches import Requests, as_utc, runs
from .payload_encoding import JSON_OPTIONS, BulkInsert, decode_json, encode_json, plain
from .payload_pruning import PRUNE_CHUNK_ROWS
from .payload_schema import (
    feedback,
    input_columns,
    migrate,
    payload_batches,
    payload_requests,
    predictions,
)


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
        # orjson, with the settings batch bodies are encoded with (JSON_OPTIONS, plain):
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
                migrate(self.engine)
        except OperationalError as error:
            raise PayloadStoreUnavailable(f"cannot open the payload store: {error.orig}") from None
        # built before serving workers fork: leave no pooled connection to be shared by them
        self.engine.dispose()
        self.coordination = Coordination(self.engine)
        """Alert cooldowns and drift-test turns shared by every process on the store."""
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
            encoded=payload_batches_format.encode(requests, keys, plain, JSON_OPTIONS),
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
        """Delete the requests received before ``older_than`` and all but the newest
        ``max_rows`` (0: no limit), in short chunks; how many (:func:`.payload_pruning.prune`)."""
        return payload_pruning.prune(self.engine, older_than, max_rows, chunk_rows=chunk_rows,
                                     pause_s=pause_s, should_stop=should_stop)

    def prune_feedback(self, older_than: datetime.datetime, *,
                       chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
                       should_stop: Callable[[], bool] | None = None) -> int:
        """Delete feedback received before ``older_than``, in short chunks; how many."""
        return payload_pruning.prune_feedback(self.engine, older_than, chunk_rows=chunk_rows,
                                              pause_s=pause_s, should_stop=should_stop)


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


def _version_of(row: Mapping[str, Any]) -> tuple[str, str | None]:
    return row["model_name"], row["model_version"]


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


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={DEFAULT_BUSY_TIMEOUT_MS}")
        enter_wal(cursor, DEFAULT_BUSY_TIMEOUT_MS / 1000)
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()
