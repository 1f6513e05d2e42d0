"""SQLAlchemy engines for greenbutton's store, and the one place database errors are translated.

SQLite gets WAL mode, a busy timeout and foreign keys on every new connection; a
``postgresql://`` URI is pointed at the psycopg (v3) driver.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from ..errors import GreenbuttonError, InvalidInput, NotReady, StaleState

DEFAULT_BUSY_TIMEOUT_MS = 5_000
_WRITER = "greenbutton_writer"
"""Execution option: on SQLite, transactions begin with ``BEGIN IMMEDIATE``."""


def normalize_uri(uri: str) -> URL:
    """The SQLAlchemy URL for ``uri``, with ``postgresql://`` using psycopg 3."""
    try:
        url = make_url(uri)
    except exc.ArgumentError as error:
        raise InvalidInput(f"not a database URI: {error}", field="uri") from error
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def create_store_engine(uri: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``uri``; for a SQLite file, its folder is created (mode 0o700) if missing."""
    url = normalize_uri(uri)
    try:
        with translate_errors():
            if url.get_backend_name() != "sqlite":
                return create_engine(url, pool_pre_ping=True)
            return _sqlite_engine(url, busy_timeout_ms)
    except ImportError as error:
        hint = "pip install 'greenbutton[postgres]'" if "postgres" in url.drivername else ""
        raise InvalidInput(
            f"no driver for {url.drivername}: {error}. {hint}", field="uri"
        ) from error


def _sqlite_engine(url: URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    is_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {}
    if is_memory:
        # one shared connection, or every pooled connection would see its own empty database
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        _make_private_dirs(Path(database).expanduser().parent)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin in _begin, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not is_memory:
                enter_wal(cursor, busy_timeout_ms / 1000)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # a writer takes the write lock first, waiting up to the busy timeout; a deferred
        # transaction that reads and then writes fails at once if another commits meanwhile
        is_writer = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if is_writer else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """``engine``, for transactions that write: on SQLite they begin by taking the write
    lock, so every read inside them sees the latest committed state (one writer at a time)."""
    return engine.execution_options(**{_WRITER: True})


def enter_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the database to WAL, waiting up to ``timeout_s`` for other writers.

    While another connection holds a write lock, SQLite answers this pragma with "database
    is locked" at once instead of calling the busy handler (it already holds a read lock,
    and waiting could deadlock), so the busy timeout alone does not cover it.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _make_private_dirs(folder: Path) -> None:
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


@contextmanager
def translate_errors(*, conflict: str | None = None) -> Iterator[None]:
    """Turn SQLAlchemy errors into greenbutton errors (``IntegrityError`` → ``StaleState``
    when ``conflict`` describes what was raced)."""
    try:
        yield
    except exc.IntegrityError as error:
        if conflict is None:
            raise GreenbuttonError(f"store integrity error: {error.orig}") from error
        raise StaleState(conflict) from error
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise NotReady(f"store unavailable: {_reason(error)}") from error
    except exc.SQLAlchemyError as error:
        raise GreenbuttonError(f"store error: {_reason(error)}") from error


def _reason(error: exc.SQLAlchemyError) -> str:
    orig = getattr(error, "orig", None)
    return str(orig) if orig is not None else str(error)
