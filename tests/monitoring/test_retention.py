"""Payload-log retention: pruning by age and by count, chunked, concurrent, periodic, by hand."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, func, select

from greenbutton.cli.main import main
from greenbutton.dataplane.hooks import PredictionRecord, utc_now
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.payload_log import PayloadLog
from greenbutton.monitoring.payload_schema import (
    HEAD,
    LOCK_KEY,
    VERSION_TABLE,
    VERSIONS,
    feedback,
    payload_batches,
    payload_requests,
    stored_revision,
)
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.retention import Retention
from greenbutton.store.migrate import Schema, head_revision
from payload_rows import logged_ids, write_each, write_rows_before_batches

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def store(own_store: PayloadStore) -> PayloadStore:
    """Pruning touches every row of a table: a database of its own per test."""
    return own_store


def rows(count: int, received_at: datetime.datetime, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"request_id": f"{prefix}{i}", "model_name": "wine", "model_version": "2",
             "endpoint": "/predict", "inputs": {"columns": ["a"], "data": [[float(i)]]},
             "predictions": [1.0], "annotations": {}, "has_outlier": False, "latency_s": 0.001,
             "received_at": received_at} for i in range(count)]


def count(store: PayloadStore, table: Any = payload_requests) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def feedback_row(request_id: str, received_at: datetime.datetime) -> dict[str, Any]:
    return {"request_id": request_id, "model_name": "wine", "model_version": "2", "truth": 1,
            "reward": None, "is_correct": True, "abs_error": None, "received_at": received_at}


def test_prune_by_age(store: PayloadStore) -> None:
    store.write_predictions(rows(5, NOW - datetime.timedelta(days=31), "old"))
    store.write_predictions(rows(3, NOW - datetime.timedelta(days=29), "new"))
    assert store.prune(NOW - datetime.timedelta(days=30), 0) == 5
    assert logged_ids(store) == ["new0", "new1", "new2"]


def test_prune_cutoff_in_another_zone_compared_in_utc(store: PayloadStore) -> None:
    store.write_predictions(rows(1, NOW - datetime.timedelta(minutes=30), "before"))
    store.write_predictions(rows(1, NOW + datetime.timedelta(minutes=30), "after"))
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert store.prune(NOW.astimezone(plus_two), 0) == 1  # 14:00+02:00 is 12:00 UTC
    assert store.prune(NOW.replace(tzinfo=None), 0) == 0  # naive: UTC
    assert logged_ids(store) == ["after0"]


def test_prune_keeps_newest_max_rows(store: PayloadStore) -> None:
    write_each(store, rows(25, NOW))
    assert store.prune(NOW - datetime.timedelta(days=1), 10) == 15
    assert logged_ids(store) == [f"r{i}" for i in range(15, 25)]
    assert store.prune(NOW - datetime.timedelta(days=1), 10) == 0
    assert store.prune(NOW - datetime.timedelta(days=1), 0) == 0  # 0: no limit


def test_prune_by_count_deletes_the_batch_across_the_limit_whole(store: PayloadStore) -> None:
    write_each(store, rows(25, NOW), per_batch=5)
    assert store.prune(NOW - datetime.timedelta(days=1), 12) == 15  # at most 12 stay
    assert logged_ids(store) == [f"r{i}" for i in range(15, 25)]
    assert count(store, payload_batches) == 2


def test_prune_by_age_waits_until_a_whole_batch_is_old(store: PayloadStore) -> None:
    store.write_predictions([*rows(2, NOW - datetime.timedelta(days=31), "old"),
                             *rows(1, NOW - datetime.timedelta(days=29), "new")])
    assert store.prune(NOW - datetime.timedelta(days=30), 0) == 0
    assert store.prune(NOW - datetime.timedelta(days=28), 0) == 3


def test_prune_deletes_in_chunks(store: PayloadStore) -> None:
    write_each(store, rows(2500, NOW - datetime.timedelta(days=40), "old"), per_batch=100)
    store.write_predictions(rows(2000, NOW - datetime.timedelta(days=40), "big"))
    store.write_predictions(rows(10, NOW))
    deletes: list[int] = []

    def counted(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM GB_PAYLOAD_REQUESTS"):
            deletes.append(cursor.rowcount)

    event.listen(store.engine, "after_cursor_execute", counted)
    assert store.prune(NOW - datetime.timedelta(days=30), 0, chunk_rows=1000, pause_s=0) == 4500
    assert deletes == [1000, 1000, 500, 2000]  # a batch larger than a chunk: a chunk of its own
    assert count(store) == 10


def test_prune_stops_between_chunks_when_asked(store: PayloadStore) -> None:
    write_each(store, rows(300, NOW - datetime.timedelta(days=40)), per_batch=100)
    asked: list[bool] = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) > 1  # let the first chunk run, then stop

    assert store.prune(NOW, 0, chunk_rows=100, pause_s=0, should_stop=stop) == 100
    assert count(store) == 200


def test_concurrent_pruners_delete_each_row_once(own_store_uri: str) -> None:
    stores = [PayloadStore(own_store_uri) for _ in range(2)]
    try:
        write_each(stores[0], rows(3000, NOW - datetime.timedelta(days=40)), per_batch=100)
        write_each(stores[0], rows(50, NOW, "new"))
        results: list[int] = []
        start = threading.Barrier(2)

        def prune(store: PayloadStore) -> None:
            start.wait()
            results.append(store.prune(NOW - datetime.timedelta(days=30), 20,
                                       chunk_rows=200, pause_s=0))

        threads = [threading.Thread(target=prune, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(results) == 3030 and len(results) == 2
        assert logged_ids(stores[0]) == [f"new{i}" for i in range(30, 50)]
        assert stores[1].prune(NOW - datetime.timedelta(days=30), 20) == 0
    finally:
        for s in stores:
            s.close()


def test_rows_logged_before_batches_pruned_with_them(store: PayloadStore) -> None:
    write_rows_before_batches(store, rows(4, NOW - datetime.timedelta(days=31), "row-old"))
    write_rows_before_batches(store, rows(3, NOW - datetime.timedelta(days=2), "row"))
    write_each(store, rows(3, NOW - datetime.timedelta(days=1), "batch"))
    assert store.prune(NOW - datetime.timedelta(days=30), 0) == 4
    assert store.prune(NOW - datetime.timedelta(days=30), 5) == 1  # the oldest row goes
    assert logged_ids(store) == ["row1", "row2", "batch0", "batch1", "batch2"]
    assert store.prune(NOW - datetime.timedelta(days=30), 2) == 3  # rows, then a batch
    assert logged_ids(store) == ["batch1", "batch2"]


def test_feedback_pruned_by_its_own_age(store: PayloadStore) -> None:
    store.save_feedback(feedback_row("old", NOW - datetime.timedelta(days=31)), replace=False)
    store.save_feedback(feedback_row("new", NOW - datetime.timedelta(days=1)), replace=False)
    assert store.prune_feedback(NOW - datetime.timedelta(days=30)) == 1
    with store.engine.connect() as connection:
        assert list(connection.execute(select(feedback.c.request_id)).scalars()) == ["new"]


def _store_made_before_alembic(uri: str, dropped_indexes: list[str],
                               then: Sequence[str] = ()) -> None:
    """A payload store as versions before its alembic chain left it: no version table, and
    without the indexes added later; ``then``: more SQL to run on it."""
    old = PayloadStore(uri)
    with old.engine.begin() as connection:
        for name in dropped_indexes:
            connection.exec_driver_sql(f"DROP INDEX {name}")
        connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        for statement in then:
            connection.exec_driver_sql(statement)
    old.close()


def test_indexes_added_since_the_first_release_are_added_to_an_older_store(
    tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    added = ["ix_gb_feedback_received_at", "ix_gb_predictions_version"]  # retention, windows
    _store_made_before_alembic(uri, added)
    store = PayloadStore(uri)  # a store made before them: the indexes are added on open
    with store.engine.connect() as connection:
        names = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'"
                                           ).scalars().all()
    store.close()
    assert set(added) <= set(names)
    assert stored_revision(store.engine) == HEAD


def test_store_opens_when_the_index_cannot_be_added(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    _store_made_before_alembic(uri, ["ix_gb_feedback_received_at"], then=[
        # the index's name taken: CREATE INDEX fails, as for a PostgreSQL role not the owner
        "CREATE TABLE ix_gb_feedback_received_at (x INTEGER)"])
    store = PayloadStore(uri)
    assert "cannot add index ix_gb_feedback_received_at" in caplog.text
    store.save_feedback(feedback_row("old", NOW - datetime.timedelta(days=31)), replace=False)
    assert store.prune_feedback(NOW) == 1
    store.close()


def test_head_is_the_newest_revision_of_the_payload_chain() -> None:
    assert head_revision(Schema(VERSIONS, VERSION_TABLE, LOCK_KEY)) == HEAD


# --- the periodic path -------------------------------------------------------------------

def record(request_id: str) -> PredictionRecord:
    import pandas as pd

    return PredictionRecord(
        request_id=request_id, model_name="wine", model_version="2", endpoint="/predict",
        inputs=pd.DataFrame({"a": [1.0]}), predictions=[5.5], annotations={}, latency_s=0.01,
        received_at=utc_now())


def make_log(store: PayloadStore, *, max_rows: int = 0, interval_s: float = 0.05
             ) -> tuple[PayloadLog, Retention, CollectorRegistry]:
    registry = CollectorRegistry()
    gauges = MonitoringGauges(registry)
    retention = Retention(store, max_age=datetime.timedelta(days=30), max_rows=max_rows,
                          interval_s=interval_s, gauges=gauges)
    log = PayloadLog(store, gauges, capacity=100, flush_interval_s=0.02, retention=retention)
    return log, retention, registry


async def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_log_prunes_after_flushes(payload_store: PayloadStore) -> None:
    payload_store.write_predictions(rows(30, utc_now() - datetime.timedelta(days=31), "old"))
    payload_store.save_feedback(feedback_row("old0", utc_now() - datetime.timedelta(days=31)),
                                replace=False)
    log, retention, registry = make_log(payload_store, max_rows=5)
    log.submit(record("a"))
    await wait_for(lambda: payload_store.find_prediction("a") is not None
                   and retention._task is not None and retention._task.done())
    assert logged_ids(payload_store) == ["a"]
    assert count(payload_store, feedback) == 0
    assert registry.get_sample_value("greenbutton_payload_pruned_total") == 30
    submitted = 1
    while registry.get_sample_value("greenbutton_payload_pruned_total") == 30:
        log.submit(record(f"b{submitted}"))  # later flushes prune again, an interval apart
        submitted += 1
        assert submitted < 500, "no second prune"
        await asyncio.sleep(0.03)
    await log.aclose()
    assert not retention.is_running
    logged = logged_ids(payload_store)  # after a prune at most 5, fewer by less than a batch
    assert logged[-1] == f"b{submitted - 1}" and len(logged) < submitted


async def test_prune_at_most_once_per_interval(payload_store: PayloadStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    log, retention, _ = make_log(payload_store, interval_s=3600)
    calls: list[int] = []
    monkeypatch.setattr(payload_store, "prune", lambda *a, **k: calls.append(1) or 0)
    for i in range(5):
        log.submit(record(f"r{i}"))
        await log.flush()
        await wait_for(lambda: not retention.is_running)
    await log.aclose()
    assert calls == [1]


async def test_failed_prune_loses_no_records_and_is_retried(
        payload_store: PayloadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    log, retention, registry = make_log(payload_store)
    attempts: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> int:
        attempts.append(1)
        raise OSError("database is locked")

    monkeypatch.setattr(payload_store, "prune", broken)
    submitted = 0
    while len(attempts) < 2:  # retried at the next interval
        log.submit(record(f"r{submitted}"))
        submitted += 1
        assert submitted < 500, "not retried"
        await asyncio.sleep(0.03)
    await log.aclose()
    assert all(payload_store.find_prediction(f"r{i}") is not None for i in range(submitted))
    assert registry.get_sample_value("greenbutton_payload_prune_failed_total") >= 2
    assert registry.get_sample_value("greenbutton_payload_dropped_total",
                                     {"model": "wine", "version": "2"}) is None


async def test_slow_prune_does_not_block_flushes(payload_store: PayloadStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log, retention, _ = make_log(payload_store)
    release = threading.Event()

    def slow(*args: Any, should_stop: Any = None, **kwargs: Any) -> int:
        while not release.wait(0.01):
            if should_stop is not None and should_stop():
                return 0
        return 0

    monkeypatch.setattr(payload_store, "prune", slow)
    log.submit(record("first"))
    await wait_for(lambda: retention.is_running)
    for i in range(5):
        log.submit(record(f"while{i}"))
    await wait_for(lambda: payload_store.find_prediction("while4") is not None)
    assert retention.is_running  # still pruning, and writing went on
    await asyncio.wait_for(log.aclose(), 5)  # asks the prune to stop between chunks
    assert not retention.is_running
    release.set()


def test_runtime_settings_reach_retention(settings: Any) -> None:
    monitoring = settings.monitoring.model_copy(update={
        "payload_retention_days": 2.5, "payload_max_rows": 7, "payload_prune_interval_s": 9.0})
    retention = Retention.from_settings(None, monitoring)  # type: ignore[arg-type]
    assert (retention.max_age, retention.max_rows, retention.interval_s) == (
        datetime.timedelta(days=2.5), 7, 9.0)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from greenbutton.config import Settings

    monkeypatch.setenv("GREENBUTTON_MONITORING__PAYLOAD_RETENTION_DAYS", "0.5")
    monkeypatch.setenv("GREENBUTTON_MONITORING__PAYLOAD_MAX_ROWS", "0")
    settings = Settings(home=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.monitoring.payload_retention_days == 0.5
    assert settings.monitoring.payload_max_rows == 0
    assert settings.monitoring.payload_prune_interval_s == 300.0
    defaults = Settings(home=tmp_path, _env_file=None).environ()  # type: ignore[call-arg]
    assert defaults["GREENBUTTON_MONITORING__PAYLOAD_MAX_ROWS"] == "0"


# --- by hand -------------------------------------------------------------------------------

def test_cli_prunes_by_age_and_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("GREENBUTTON_HOME", str(tmp_path / "gb"))
    (tmp_path / "gb").mkdir()
    store = PayloadStore(f"sqlite:///{tmp_path / 'gb' / 'monitoring' / 'payloads.db'}")
    store.write_predictions(rows(4, utc_now() - datetime.timedelta(days=8), "old"))
    write_each(store, rows(6, utc_now() - datetime.timedelta(hours=1), "new"))
    store.save_feedback(feedback_row("old0", utc_now() - datetime.timedelta(days=8)),
                        replace=False)
    assert main(["payload", "prune", "--older-than", "7d", "--max-rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "deleted 5 payload records and 1 feedback records" in out
    assert logged_ids(store) == [f"new{i}" for i in range(1, 6)]
    assert main(["payload", "prune"]) == 0  # settings' defaults: 30 days, 5 M rows
    assert "deleted 0 payload records" in capsys.readouterr().out
    assert main(["payload", "prune", "--older-than", "last week"]) == 1
    assert "--older-than must be like 7d" in capsys.readouterr().err
    store.close()
