"""Choosing a store by URI, and what the SQL backend sets up on the way."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from greenbutton.errors import GreenbuttonError, UnsupportedBackend
from greenbutton.store import Stage, StageChange, open_store
from greenbutton.store.engine import create_store_engine, normalize_uri
from greenbutton.store.sql import SqlStore
from sqlite_writer import holding_write_lock


def test_open_store_memory_is_a_sql_store_that_keeps_nothing() -> None:
    store = open_store("memory://")
    store.apply_transitions([StageChange("m", 1, Stage.NONE, Stage.STAGING)], actor="a")
    assert store.stage_of("m", 1) is Stage.STAGING
    assert [e.action for e in store.governance_store().audit_entries()] == [
        "lifecycle.transition"]
    assert open_store("memory://").stage_of("m", 1) is Stage.NONE


def test_open_store_sqlite_returns_sql_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'gb.db'}")
    assert isinstance(store, SqlStore)
    store.close()


def test_open_store_unknown_scheme_raises_unsupported_backend() -> None:
    with pytest.raises(UnsupportedBackend):
        open_store("mongodb://localhost/gb")


def test_normalize_uri_postgresql_uses_psycopg() -> None:
    assert normalize_uri("postgresql://u@db/gb").drivername == "postgresql+psycopg"


def test_normalize_uri_explicit_driver_is_kept() -> None:
    assert normalize_uri("postgresql+psycopg://u@db/gb").drivername == "postgresql+psycopg"


def test_open_store_sqlite_creates_private_parent_folders(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    open_store(f"sqlite:///{folder / 'gb.db'}").close()
    for created in (tmp_path / "a", folder):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700


def test_open_store_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "gb.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_engine_waits_for_a_writer_before_entering_wal(tmp_path: Path) -> None:
    # a writer holding its lock makes the WAL pragma fail at once, busy timeout or not
    path = tmp_path / "gb.db"
    with holding_write_lock(path, release_after_s=0.3):
        engine = create_store_engine(f"sqlite:///{path}", busy_timeout_ms=5_000)
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        engine.dispose()
    assert mode == "wal"


def test_sqlite_engine_gives_up_on_wal_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "gb.db"
    with holding_write_lock(path):
        engine = create_store_engine(f"sqlite:///{path}", busy_timeout_ms=200)
        try:
            with pytest.raises(OperationalError, match="locked"):
                engine.connect()
        finally:
            engine.dispose()


def test_open_store_sqlite_in_memory_keeps_data() -> None:
    store = open_store("sqlite://")
    store.apply_transitions([StageChange("m", 1, Stage.NONE, Stage.STAGING)], actor="a")
    assert store.stage_of("m", 1) is Stage.STAGING
    store.close()


def test_open_store_not_a_database_raises_greenbutton_error(tmp_path: Path) -> None:
    path = tmp_path / "gb.db"
    path.write_bytes(b"this is not a SQLite file" * 100)
    with pytest.raises(GreenbuttonError):
        open_store(f"sqlite:///{path}")
