"""Alembic migrations shipped in the package: upgrade on open, idempotent, race-tolerant."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from greenbutton.store import Stage, StageChange, open_store
from greenbutton.store.migrate import VERSION_TABLE, current_revision, head_revision, upgrade


@pytest.fixture
def uri(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'gb.db'}"


def tables(uri: str) -> set[str]:
    """Table names in the SQLite file behind ``uri``."""
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_current_revision_of_empty_database_is_none(uri: str) -> None:
    assert current_revision(uri) is None


def test_upgrade_empty_database_reaches_head(uri: str) -> None:
    assert upgrade(uri) == head_revision()
    assert current_revision(uri) == head_revision()
    assert {"version_stages", "transitions", VERSION_TABLE} <= tables(uri)


def test_upgrade_at_head_changes_nothing(uri: str) -> None:
    upgrade(uri)
    assert upgrade(uri) == head_revision()
    assert current_revision(uri) == head_revision()


def test_open_store_upgrades_to_head(uri: str) -> None:
    open_store(uri).close()
    assert current_revision(uri) == head_revision()


def test_open_store_again_keeps_data(uri: str) -> None:
    store = open_store(uri)
    store.apply_transitions([StageChange("m", 1, Stage.NONE, Stage.PRODUCTION)], actor="a")
    store.close()
    reopened = open_store(uri)
    assert reopened.stage_of("m", 1) is Stage.PRODUCTION
    assert len(reopened.history("m")) == 1
    reopened.close()


def test_open_store_concurrently_on_fresh_file_all_succeed(uri: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        barrier.wait()
        try:
            open_store(uri).close()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current_revision(uri) == head_revision()


@pytest.mark.slow
def test_open_store_from_racing_processes_all_succeed(uri: str) -> None:
    code = "import sys; from greenbutton.store import open_store; open_store(sys.argv[1]).close()"
    racers = [subprocess.Popen([sys.executable, "-c", code, uri]) for _ in range(4)]
    assert [racer.wait(timeout=60) for racer in racers] == [0, 0, 0, 0]
    assert current_revision(uri) == head_revision()


def test_open_store_beside_foreign_alembic_table_leaves_it_alone(uri: str) -> None:
    # MLflow keeps its own alembic_version; greenbutton may share its database
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('mlflow-head')")
    open_store(uri).close()
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("mlflow-head",)
        ]
    assert current_revision(uri) == head_revision()
