"""The payload log: buffered, flushed, bounded (drops are counted), and exportable."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update

from greenbutton.dataplane.hooks import PredictionRecord, utc_now
from greenbutton.errors import InvalidInput
from greenbutton.monitoring.export import export_dataset, parse_since
from greenbutton.monitoring.feedback import Feedback, FeedbackService
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.payload_batches import UnreadableBatch, runs
from greenbutton.monitoring.payload_log import PayloadLog
from greenbutton.monitoring.payload_schema import payload_batches
from greenbutton.monitoring.payload_store import FeedbackExists, PayloadStore
from sqlite_writer import holding_write_lock


def record(request_id: str, *, is_outlier: bool = False, rows: int = 1) -> PredictionRecord:
    inputs = pd.DataFrame({"a": [1.0] * rows, "b": ["x"] * rows})
    return PredictionRecord(
        request_id=request_id, model_name="wine", model_version="2", endpoint="/predict",
        inputs=inputs, predictions=[5.5] * rows,
        annotations={"outliers": [{"is_outlier": is_outlier, "score": 1.0}] * rows},
        latency_s=0.01, received_at=utc_now())


def logged_row(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "model_name": "wine", "model_version": "2",
            "endpoint": "/predict", "inputs": {"columns": ["a"], "data": [[1.0]]},
            "predictions": [5.5], "annotations": {}, "has_outlier": False, "latency_s": 0.01,
            "received_at": utc_now()}


def make_log(store: PayloadStore, capacity: int = 10) -> tuple[PayloadLog, CollectorRegistry]:
    registry = CollectorRegistry()
    log = PayloadLog(store, MonitoringGauges(registry), capacity=capacity, flush_interval_s=0.05)
    return log, registry


async def test_submitted_records_written_on_close(payload_store: PayloadStore) -> None:
    log, _ = make_log(payload_store)
    log.submit(record("a"))
    assert log.pending("a")
    await log.aclose()
    found = payload_store.find_prediction("a")
    assert found is not None and found.model_version == "2"
    assert found.inputs["data"][0] == [1.0, "x"]


def test_rows_round_trip_on_each_backend(any_store: PayloadStore) -> None:
    ids = [f"rt-{uuid.uuid4().hex}" for _ in range(1201)]  # more than one statement's rows
    inputs = pd.DataFrame([[1.5, np.nan], [np.inf, -2.0]], columns=pd.Index(["a", "b"]))
    received = datetime.datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    rows = [{"request_id": i, "model_name": "wine", "model_version": None,
             "endpoint": "/invocations", "inputs": {"columns": ["a", "b"],
                                                   "data": inputs.to_numpy()},
             "predictions": np.array([3, 4], dtype=np.int64),
             "annotations": {"outliers": [{"is_outlier": np.bool_(True), "score": 2.5}, None]},
             "has_outlier": True, "latency_s": 0.002, "received_at": received} for i in ids]
    any_store.write_predictions(rows)
    found = any_store.find_prediction(ids[-1])
    assert found is not None and found.model_version is None
    assert found.inputs == {"columns": ["a", "b"], "data": [[1.5, None], [None, -2.0]]}
    assert found.predictions == [3, 4]
    assert found.annotations == {"outliers": [{"is_outlier": True, "score": 2.5}, None]}
    assert found.received_at.replace(tzinfo=datetime.UTC) == received
    assert any_store.find_prediction(ids[0]) is not None


def test_a_versions_recent_predictions_on_each_backend(any_store: PayloadStore) -> None:
    # what a drift window reads: the newest requests of one version, oldest first, names inline
    model = f"wine-{uuid.uuid4().hex[:8]}"  # (the shared PostgreSQL keeps other tests' rows)

    def row(version: str | None, value: float, name: str = model) -> dict[str, Any]:
        return {"request_id": f"rp-{uuid.uuid4().hex}", "model_name": name,
                "model_version": version, "endpoint": "/predict",
                "inputs": {"columns": ["a", "b"], "data": [[value, -value]]},
                "predictions": [value * 2], "annotations": {"outliers": [None]},
                "has_outlier": False, "latency_s": value / 1000, "received_at": utc_now()}

    any_store.write_predictions([row("1", 1.0), row("2", 2.0), row("1", 3.0)])
    any_store.write_predictions([row("1", 4.0, name=f"{model}-other"), row(None, 5.0),
                                 row("1", 6.0)])
    recent = any_store.recent_predictions(model, "1", 2)
    assert [r.inputs for r in recent] == [{"columns": ["a", "b"], "data": [[3.0, -3.0]]},
                                          {"columns": ["a", "b"], "data": [[6.0, -6.0]]}]
    assert [r.predictions for r in recent] == [[6.0], [12.0]]
    assert [r.latency_s for r in recent] == [0.003, 0.006]
    assert recent[0].id < recent[1].id
    assert [r.inputs["data"] for r in any_store.recent_predictions(model, None, 5)] == [
        [[5.0, -5.0]]]
    assert any_store.recent_predictions(model, "3", 5) == []


class Flagger:
    """Flags rows whose ``a`` is above 1; records the size of every call."""

    name = "outliers"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        self.calls.append(len(frame))
        return [{"is_outlier": a > 1, "score": a} for a in frame["a"].tolist()]


def unannotated(request_id: str, a: float) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, model_name="wine", model_version="2", endpoint="/invocations",
        inputs=pd.DataFrame({"a": [a]}), predictions=np.array([5.5]), annotations={},
        latency_s=0.01, received_at=utc_now())


async def test_unannotated_records_scored_together_at_flush(payload_store: PayloadStore) -> None:
    flagger = Flagger()
    log = PayloadLog(payload_store, MonitoringGauges(CollectorRegistry()), capacity=10,
                     flush_interval_s=60, annotators=[flagger])
    for i, a in enumerate([0.5, 3.0, 0.2]):
        log.submit(unannotated(f"u{i}", a))
    log.submit(record("already"))  # annotated on the request path: left as it was
    await log.aclose()
    assert flagger.calls == [3]
    found = payload_store.find_prediction("u1")
    assert found is not None
    assert found.annotations == {"outliers": [{"is_outlier": True, "score": 3.0}]}
    assert payload_store.find_prediction("already").annotations["outliers"][0]["score"] == 1.0


async def test_failed_write_requeues_records_annotated(payload_store: PayloadStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    flagger = Flagger()
    log = PayloadLog(payload_store, MonitoringGauges(CollectorRegistry()), capacity=10,
                     flush_interval_s=60, annotators=[flagger])
    log.submit(unannotated("again", 2.0))
    write = payload_store.write_prepared
    monkeypatch.setattr(payload_store, "write_prepared",
                        lambda rows: (_ for _ in ()).throw(OSError("database is down")))
    await log.flush()
    assert log.pending("again")
    monkeypatch.setattr(payload_store, "write_prepared", write)
    await log.aclose()
    assert flagger.calls == [1]  # scored (and counted) once, not again on the retry
    assert payload_store.find_prediction("again").annotations["outliers"][0]["is_outlier"]


async def test_full_buffer_drops_and_counts(payload_store: PayloadStore) -> None:
    log, registry = make_log(payload_store, capacity=2)
    for name in "abcd":
        log.submit(record(name))
    dropped = registry.get_sample_value("greenbutton_payload_dropped_total",
                                        {"model": "wine", "version": "2"})
    assert dropped == 2
    await log.aclose()
    assert payload_store.find_prediction("b") is not None
    assert payload_store.find_prediction("c") is None


def test_feedback_duplicate_refused_unless_replace(payload_store: PayloadStore) -> None:
    values = {"request_id": "r", "model_name": "wine", "model_version": "2", "truth": 6,
              "reward": None, "is_correct": None, "abs_error": 0.5, "received_at": utc_now()}
    payload_store.save_feedback(values, replace=False)
    with pytest.raises(FeedbackExists):
        payload_store.save_feedback(values, replace=False)
    payload_store.save_feedback({**values, "abs_error": 0.1}, replace=True)
    assert payload_store.summaries()[0].mean_abs_error == pytest.approx(0.1)


async def test_export_excludes_outliers_and_keeps_feedback(payload_store: PayloadStore,
                                                           tmp_path: Path) -> None:
    log, _ = make_log(payload_store)
    log.submit(record("ok", rows=2))
    log.submit(record("odd", is_outlier=True))
    await log.aclose()
    payload_store.save_feedback({"request_id": "ok", "model_name": "wine", "model_version": "2",
                                 "truth": [6, 5], "reward": None, "is_correct": None,
                                 "abs_error": 0.5, "received_at": utc_now()}, replace=False)
    since = parse_since("7d")
    result = export_dataset(payload_store, "wine", since, tmp_path / "wine.parquet",
                            exclude_outliers=True, with_feedback=True)
    frame = pd.read_parquet(result.path)
    assert result.rows == 2 and list(frame["truth"]) == [6, 5]
    assert {"a", "b", "prediction", "is_outlier", "request_id"} <= set(frame.columns)
    everything = export_dataset(payload_store, "wine", since, tmp_path / "all.csv")
    assert everything.rows == 3


def test_parse_since_durations_and_iso() -> None:
    now = datetime.datetime(2026, 1, 8, tzinfo=datetime.UTC)
    assert parse_since("7d", now) == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert parse_since("2026-01-02T00:00:00").tzinfo is datetime.UTC
    with pytest.raises(InvalidInput):
        parse_since("last tuesday")


async def test_export_logged_to_mlflow_as_dataset_input(payload_store: PayloadStore,
                                                        mlflow_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    log, _ = make_log(payload_store)
    log.submit(record("r1"))
    await log.aclose()
    result = export_dataset(payload_store, "wine", parse_since("1d"), tmp_path / "wine.parquet",
                            log_to_mlflow=True)
    assert result.run_id is not None
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["wine-payload-log"]
    dataset = run.inputs.dataset_inputs[0].dataset  # the file's metadata, not its data
    assert json.loads(dataset.profile) == {"num_rows": 1}
    columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
    assert {"a", "b", "prediction", "request_id"} <= set(columns)
    assert json.loads(dataset.source)["uri"] == str(result.path.resolve())
    assert len(dataset.digest) == 8


def test_a_write_logs_one_batch_per_run_of_a_model_version(payload_store: PayloadStore) -> None:
    rows = [{**logged_row(f"run-{i}"), "model_version": version, "latency_s": i / 1000}
            for i, version in enumerate(["1", "1", "2", "1"])]
    payload_store.write_predictions(rows)
    with payload_store.engine.connect() as connection:
        batches = connection.execute(select(payload_batches.c.model_version,
                                            payload_batches.c.requests)
                                     .order_by(payload_batches.c.id)).all()
    assert [tuple(b) for b in batches] == [("1", 2), ("2", 1), ("1", 1)]
    assert [r.latency_s for r in payload_store.recent_predictions("wine", "1", 5)] == [
        0.0, 0.001, 0.003]
    found = payload_store.find_prediction("run-2")
    assert found is not None and found.model_version == "2"


def test_a_batch_in_a_layout_this_version_does_not_read_is_refused(
    payload_store: PayloadStore
) -> None:
    payload_store.write_predictions([logged_row("later")])
    with payload_store.engine.begin() as connection:
        connection.execute(update(payload_batches).values(body=zlib.compress(b'{"format": 2}')))
    with pytest.raises(UnreadableBatch, match="format 2; this greenbutton reads format 1"):
        payload_store.find_prediction("later")
    with payload_store.engine.begin() as connection:
        connection.execute(update(payload_batches).values(body=b'{"format": 1}'))
    with pytest.raises(UnreadableBatch, match="not compressed JSON"):
        payload_store.find_prediction("later")


async def test_export_since_a_time_in_another_zone_means_that_instant(
        payload_store: PayloadStore) -> None:
    log, _ = make_log(payload_store)
    log.submit(record("zoned"))
    await log.aclose()
    written = utc_now()
    east = datetime.timezone(datetime.timedelta(hours=5))
    # an hour before the write, written as a wall time five hours ahead of UTC: a comparison
    # of wall times (SQLite keeps them without zone) would put it after the row
    before = (written - datetime.timedelta(hours=1)).astimezone(east)
    after = (written + datetime.timedelta(minutes=1)).astimezone(east)
    assert [r["request_id"] for r in payload_store.iter_joined("wine", before)] == ["zoned"]
    assert list(payload_store.iter_joined("wine", after)) == []


def test_sqlite_payload_store_opens_while_another_process_writes(tmp_path: Path) -> None:
    # workers open the store together; a writer's lock must not fail the WAL switch at once
    path = tmp_path / "payload.db"
    with holding_write_lock(path, release_after_s=0.3):
        store = PayloadStore(f"sqlite:///{path}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.engine.dispose()


async def test_feedback_waits_for_a_record_another_worker_flushes_late(
        payload_store: PayloadStore) -> None:
    # the other worker flushes every 0.25 s, but its flush reaches the store 0.7 s later
    other = PayloadLog(payload_store, MonitoringGauges(CollectorRegistry()), capacity=10,
                       flush_interval_s=60)  # flushed below, late
    other.submit(record("elsewhere"))
    here, _ = make_log(payload_store)
    service = FeedbackService(payload_store, here, here.gauges, flush_interval_s=0.25)

    async def late_flush() -> None:
        await asyncio.sleep(0.7)
        await other.flush()

    flushing = asyncio.create_task(late_flush())
    answer = await service.record(Feedback("elsewhere", truth=5.5))
    await flushing
    assert answer["abs_error"] == 0.0
    await other.aclose()
    await here.aclose()



def test_runs_split_at_each_change_of_key_and_at_the_limit() -> None:
    versions = ["1", "1", "1", "2", "1", "1"]
    assert runs(versions, str) == [(0, 3), (3, 4), (4, 6)]
    assert runs(versions, str, limit=2) == [(0, 2), (2, 3), (3, 4), (4, 6)]
    assert runs([], str) == []
    assert runs([3, 1, 1, 5, 1], lambda _: 0, limit=4, size=int) == [(0, 2), (2, 3), (3, 4),
                                                                     (4, 5)]


def test_export_joins_feedback_across_a_batch_of_more_than_a_thousand_requests(
    payload_store: PayloadStore
) -> None:
    payload_store.write_predictions([logged_row(f"big-{i}") for i in range(1201)])
    payload_store.save_feedback({"request_id": "big-1200", "model_name": "wine",
                                 "model_version": "2", "truth": 7, "reward": None,
                                 "is_correct": None, "abs_error": None,
                                 "received_at": utc_now()}, replace=False)
    joined = list(payload_store.iter_joined("wine", utc_now() - datetime.timedelta(hours=1)))
    assert len(joined) == 1201 and joined[-1]["truth"] == 7
    assert [j["truth"] for j in joined[:-1]] == [None] * 1200
