"""The payload log and feedback tables (SQLAlchemy; SQLite by default, PostgreSQL at scale).

They live in their own database (``monitoring.payload_store_uri``), apart from greenbutton's
lifecycle store: they grow with traffic and are written by every serving replica. Append-mostly
tables whose shape only grows, so they are created with ``create_all`` on first use instead of
an alembic chain (a later change of shape would add that chain). A payload row's column names
are stored once per distinct set, in ``gb_input_columns`` (see :mod:`.input_columns`).
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import ColumnElement

from ..errors import AlreadyExists, NotFound, NotReady
from ..store.engine import DEFAULT_BUSY_TIMEOUT_MS, enter_wal, normalize_uri
from .input_columns import KEY_CHARS, InputColumns

logger = logging.getLogger(__name__)
metadata = MetaData()

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

predictions_by_version = Index("ix_gb_predictions_version", predictions.c.model_name,
                               predictions.c.model_version, predictions.c.id)
"""A version's newest rows (drift windows) without scanning other versions' rows: on 200 k
rows, 0.5 ms against 38-55 ms for a version with few rows, for 0.3-0.5 µs more per row
written. Added after the table first shipped, so it is also created (``IF NOT EXISTS``) on
stores made before it; on a large store that first open takes a while, once."""

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
    Column("is_correct", Boolean, nullable=True),
    Column("abs_error", Float, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
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
        # orjson: JSON columns are written for every request (payload log) — the stdlib
        # encoder was a measurable share of monitoring's cost per request
        self.engine: Engine = create_engine(normalize_uri(uri), json_serializer=encode_json,
                                            json_deserializer=decode_json)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
            _add_missing_index(self.engine, feedback_received_at)
            _add_missing_index(self.engine, predictions_by_version)
        except OperationalError as error:
            raise PayloadStoreUnavailable(f"cannot open the payload store: {error.orig}") from None
        # built before serving workers fork: leave no pooled connection to be shared by them
        self.engine.dispose()
        self._bulk = BulkInsert.for_dialect(predictions, self.engine.dialect)
        self._columns = InputColumns(input_columns)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def write_predictions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert payload rows (dicts with the ``gb_predictions`` columns) in one transaction."""
        self.write_prepared([self.prepare_predictions(rows)])

    def prepare_predictions(self, rows: Sequence[dict[str, Any]]) -> PreparedRows:
        """``rows`` converted for the database (column names by key, JSON encoded, times
        formatted), not written; no database access.

        The conversion is the CPU-bound part of a write: callers that share the interpreter
        with a request loop run it there in small chunks, and only :meth:`write_prepared`,
        which is mostly the driver's own work, in a thread.
        """
        inputs, column_sets = self._columns.by_key([row["inputs"] for row in rows])
        if self._bulk is None:
            return PreparedRows(rows=[{**row, "inputs": i} for row, i in zip(rows, inputs,
                                                                              strict=True)],
                                column_sets=column_sets)
        return PreparedRows(bound=self._bulk.bind(rows, {"inputs": inputs}),
                            column_sets=column_sets)

    def write_prepared(self, prepared: Sequence[PreparedRows]) -> None:
        """Insert prepared rows in one transaction, with the column sets they introduce."""
        if not any(p.rows or p.bound for p in prepared):
            return
        column_sets = {k: v for part in prepared for k, v in part.column_sets.items()}
        with self.engine.begin() as connection:
            self._columns.register(connection, column_sets)
            for part in prepared:
                if part.rows:
                    connection.execute(insert(predictions), part.rows)
                if part.bound and self._bulk is not None:
                    for statement, parameters in self._bulk.statements(part.bound):
                        connection.exec_driver_sql(statement, parameters)
        self._columns.remember(column_sets)  # only now: a rolled-back set is registered again

    def find_prediction(self, request_id: str) -> LoggedPrediction | None:
        """The latest logged prediction with ``request_id``."""
        query = (select(predictions).where(predictions.c.request_id == request_id)
                 .order_by(predictions.c.id.desc()).limit(1))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
            if row is None:
                return None
            inputs = self._columns.inline(connection, row["inputs"], row["request_id"])
        return LoggedPrediction(row["request_id"], row["model_name"], row["model_version"],
                                inputs, row["predictions"], row["annotations"],
                                row["received_at"])

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
        now = _utc(now or utc_now())
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
                        {**key, **values, "claimed_at": _utc(utc_now())}))
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
        """Count, accuracy, mean absolute error and mean reward per model version."""
        query = select(feedback.c.model_name, feedback.c.model_version, func.count(),
                       func.avg(func.cast(feedback.c.is_correct, Float)),
                       func.avg(feedback.c.abs_error), func.avg(feedback.c.reward)
                       ).group_by(feedback.c.model_name, feedback.c.model_version)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [FeedbackSummary(r[0], r[1], int(r[2]), _float(r[3]), _float(r[4]), _float(r[5]))
                for r in rows]

    def recent_truths(self, model_name: str, model_version: str | None, limit: int) -> list[Any]:
        """The truths of the most recent ``limit`` feedbacks of a version (label drift)."""
        query = (select(feedback.c.truth).where(feedback.c.model_name == model_name,
                                                feedback.c.model_version == model_version,
                                                feedback.c.truth.is_not(None))
                 .order_by(feedback.c.received_at.desc()).limit(limit))
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def recent_predictions(self, model_name: str, model_version: str | None,
                           limit: int) -> list[RecentPrediction]:
        """The newest ``limit`` logged requests of a version, oldest first, whichever worker
        or replica logged them (drift windows)."""
        query = (select(predictions.c.id, predictions.c.request_id, predictions.c.inputs,
                        predictions.c.predictions, predictions.c.annotations,
                        predictions.c.latency_s)
                 .where(predictions.c.model_name == model_name,
                        predictions.c.model_version == model_version)
                 .order_by(predictions.c.id.desc()).limit(limit))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            found = [RecentPrediction(row.id, self._columns.inline(connection, row.inputs,
                                                                   row.request_id),
                                      row.predictions, row.annotations, row.latency_s)
                     for row in rows]
        found.reverse()
        return found

    def iter_joined(self, model_name: str, since: datetime.datetime) -> Iterator[dict[str, Any]]:
        """Logged predictions of ``model_name`` since ``since``, with their feedback if any."""
        query = (select(predictions, feedback.c.truth, feedback.c.reward)
                 .join(feedback, feedback.c.request_id == predictions.c.request_id, isouter=True)
                 .where(predictions.c.model_name == model_name,
                        predictions.c.received_at >= _utc(since))
                 .order_by(predictions.c.id)
                 .execution_options(yield_per=1000))  # PostgreSQL: a server-side cursor
        with self.engine.connect() as connection, connection.execute(query) as result:
            for row in result.mappings():
                joined = dict(row)
                joined["inputs"] = self._columns.inline(connection, row["inputs"],
                                                        row["request_id"])
                yield joined

    def prune(self, older_than: datetime.datetime, max_rows: int, *,
              chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
              should_stop: Callable[[], bool] | None = None) -> int:
        """Delete payload rows received before ``older_than`` and all but the newest
        ``max_rows`` (0: no limit); return how many were deleted. Column sets stay (one short
        row each, see :data:`input_columns`).

        Rows go in chunks of ``chunk_rows``, each its own short transaction, with a pause
        after each (``pause_s``; None: as long as the chunk took) so that on SQLite the
        payload writers of the serving processes get the write lock in between. Safe to run
        from several processes at once: a row deleted by another pruner is simply not counted
        again (PostgreSQL: each pruner skips the rows another is deleting).

        ``max_rows`` counts ids back from the newest: rows whose id is more than ``max_rows``
        below the highest id are deleted. Ids are consecutive except where a failed write
        used some up (PostgreSQL), so at most ``max_rows`` rows remain, a few fewer after
        such gaps; counting rows exactly would read the whole table every time.
        """
        cutoff = _utc(older_than)
        deleted = self._delete_chunks(predictions, predictions.c.id,
                                      predictions.c.received_at < cutoff,
                                      chunk_rows, pause_s, should_stop)
        if max_rows > 0 and not (should_stop and should_stop()):
            with self.engine.connect() as connection:
                newest = connection.execute(select(func.max(predictions.c.id))).scalar()
            if newest is not None and newest > max_rows:
                deleted += self._delete_chunks(predictions, predictions.c.id,
                                               predictions.c.id <= newest - max_rows,
                                               chunk_rows, pause_s, should_stop)
        return deleted

    def prune_feedback(self, older_than: datetime.datetime, *,
                       chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
                       should_stop: Callable[[], bool] | None = None) -> int:
        """Delete feedback received before ``older_than`` (chunked as :meth:`prune`)."""
        return self._delete_chunks(feedback, feedback.c.request_id,
                                   feedback.c.received_at < _utc(older_than),
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
class PreparedRows:
    """Payload rows ready to insert: bound values (bulk path) or plain dicts (SQLAlchemy's),
    and the column sets (by key) they refer to that were not yet known to be stored."""

    bound: list[list[Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    column_sets: dict[str, list[Any]] = field(default_factory=dict)


class BulkInsert:
    """Many rows in a few multi-row ``INSERT … VALUES (…), (…)`` statements.

    The payload log writes about a thousand rows per second per serving process.
    SQLAlchemy's executemany spends ~10 µs of Python per row, and the driver releases and
    retakes the interpreter lock for every row; here each value goes through the dialect's
    own bind processor (the same conversion SQLAlchemy applies, done by :meth:`bind`
    wherever the caller likes) and a statement carries up to ``rows_per_statement`` rows.
    """

    MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
    """Positional placeholder per DBAPI paramstyle (sqlite3: qmark; psycopg: pyformat)."""

    def __init__(self, table: Table, dialect: Dialect, mark: str,
                 rows_per_statement: int = 500) -> None:
        columns = [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]
        self.names = [c.name for c in columns]
        self.processors = [_bind_processor(c, dialect) for c in columns]
        self._values = operator.itemgetter(*self.names)
        self._processed = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        quote = dialect.identifier_preparer.quote
        self.head = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in self.names)})"
                     " VALUES ")
        self.group = "(" + ", ".join([mark] * len(columns)) + ")"
        self.rows_per_statement = rows_per_statement

    @classmethod
    def for_dialect(cls, table: Table, dialect: Dialect) -> BulkInsert | None:
        """A bulk insert for ``dialect``, or None when its paramstyle is not positional."""
        mark = cls.MARKS.get(dialect.paramstyle)
        return cls(table, dialect, mark) if mark is not None else None

    def bind(self, rows: Sequence[dict[str, Any]],
             instead: Mapping[str, Sequence[Any]] | None = None) -> list[list[Any]]:
        """Each row's values in column order, through the dialect's bind processors;
        ``instead``: a column's values for every row, used in place of the rows' own (no copy
        of each row with one value changed)."""
        values_of, processed = self._values, self._processed
        replaced = [(self.names.index(name), column) for name, column in (instead or {}).items()]
        bound = []
        for position, row in enumerate(rows):
            values = list(values_of(row))  # one C call for every column
            for i, column in replaced:
                values[i] = column[position]
            for i, process in processed:
                values[i] = process(values[i])
            bound.append(values)
        return bound

    def statements(self, bound: Sequence[Sequence[Any]]
                   ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(SQL, parameters) pairs inserting the ``bound`` rows."""
        for start in range(0, len(bound), self.rows_per_statement):
            chunk = bound[start:start + self.rows_per_statement]
            yield (self.head + ", ".join([self.group] * len(chunk)),
                   tuple(itertools.chain.from_iterable(chunk)))


def _bind_processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The dialect's bind processor for ``column``; for SQLite datetimes and JSON, faster
    equal ones.

    SQLAlchemy formats a SQLite datetime with a %-format of seven named fields (5 µs, the
    largest share of preparing a payload row); ``isoformat`` writes the same text in 0.5 µs.
    """
    if isinstance(column.type, JSON) and dialect.name == "sqlite":
        # what SQLAlchemy's processor does with the engine's serializer, minus its wrapper (a
        # Python call per value) and its handling of JSON.NULL, which payload rows never hold
        # (psycopg's wraps the text in its Json adapter: left as it is)
        return encode_json
    impl = column.type.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if (process is None or dialect.name != "sqlite"
            or getattr(impl, "_storage_format", None) != _SQLITE_DATETIME_FORMAT):
        return process

    def fast(value: Any) -> Any:
        if type(value) is datetime.datetime:  # "YYYY-MM-DD HH:MM:SS.ffffff", any tz dropped
            return value.isoformat(" ", "microseconds")[:26]
        return process(value)

    return fast


_SQLITE_DATETIME_FORMAT = ("%(year)04d-%(month)02d-%(day)02d "
                           "%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d")
"""SQLAlchemy's default storage format of SQLite datetimes (what :func:`_bind_processor`
reproduces; a column with another format keeps SQLAlchemy's processor)."""


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


def _utc(moment: datetime.datetime) -> datetime.datetime:
    # SQLite keeps times as text without their zone (written in UTC): compare in UTC
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={DEFAULT_BUSY_TIMEOUT_MS}")
        enter_wal(cursor, DEFAULT_BUSY_TIMEOUT_MS / 1000)
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()
