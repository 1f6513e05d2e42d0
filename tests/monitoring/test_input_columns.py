"""The payload log keeps each set of column names once: rows refer to it by key."""

from __future__ import annotations

import datetime
import threading
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from greenbutton.dataplane.hooks import PredictionRecord, utc_now
from greenbutton.monitoring.export import collect
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.input_columns import UnknownColumnSet, column_set_key
from greenbutton.monitoring.payload_log import PayloadLog, _ColumnNames
from greenbutton.monitoring.payload_schema import (
    feedback,
    input_columns,
    payload_batches,
    predictions,
)
from greenbutton.monitoring.payload_store import PayloadStore

SINCE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def unique_names(count: int = 64) -> list[str]:
    """Column names no other test uses (the PostgreSQL database is shared)."""
    tag = uuid.uuid4().hex[:8]
    return [f"pixel_{i}_{tag}" for i in range(count)]


def rows(names: list[str], count: int, model: str, prefix: str = "r"
         ) -> list[dict[str, Any]]:
    return [{"request_id": f"{prefix}-{uuid.uuid4().hex}", "model_name": model,
             "model_version": "1", "endpoint": "/predict",
             "inputs": {"columns": names, "data": [[float(i + j) for j in range(len(names))]]},
             "predictions": [i], "annotations": {}, "has_outlier": False, "latency_s": 0.001,
             "received_at": utc_now()} for i in range(count)]


def stored_sets(store: PayloadStore, *names: list[str]) -> int:
    keys = [column_set_key(n) for n in names]
    query = select(func.count()).select_from(input_columns).where(input_columns.c.key.in_(keys))
    with store.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def model() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def test_rows_read_back_with_their_names(any_store: PayloadStore) -> None:
    names, name = unique_names(), model()
    written = rows(names, 1201, name)  # more than one statement's rows
    any_store.write_predictions(written)
    found = any_store.find_prediction(written[7]["request_id"])
    assert found is not None and found.inputs == written[7]["inputs"]
    frame = collect(any_store, name, SINCE)
    assert list(frame.columns[:64]) == names
    assert frame[names].to_numpy().tolist() == [r["inputs"]["data"][0] for r in written]


def test_rows_store_a_key_instead_of_the_names(any_store: PayloadStore) -> None:
    names, name = unique_names(), model()
    written = rows(names, 10, name)
    any_store.write_predictions(written[:5])
    any_store.write_predictions(written[5:])
    query = select(payload_batches.c.body).where(payload_batches.c.model_name == name)
    with any_store.engine.connect() as connection:
        bodies = [zlib.decompress(body).decode() for body in connection.execute(query).scalars()]
    assert len(bodies) == 2
    assert all(names[0] not in body and column_set_key(names) in body for body in bodies)
    assert stored_sets(any_store, names) == 1


def test_rows_with_names_inline_read_with_new_ones(any_store: PayloadStore) -> None:
    names, name = unique_names(3), model()
    old = rows(names, 2, name, "old")
    with any_store.engine.begin() as connection:  # as the store wrote them before column sets
        connection.execute(insert(predictions), old)
    new = rows(names, 2, name, "new")
    any_store.write_predictions(new)
    frame = collect(any_store, name, SINCE)
    assert frame["request_id"].tolist() == [r["request_id"] for r in old + new]
    assert frame[names].to_numpy().tolist() == [r["inputs"]["data"][0] for r in old + new]
    found = any_store.find_prediction(old[1]["request_id"])
    assert found is not None and found.inputs == old[1]["inputs"]


def test_store_made_before_column_sets_gets_the_table(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'before.db'}"
    engine = create_engine(uri)
    predictions.create(engine)  # the tables a store had before gb_input_columns
    feedback.create(engine)
    old = rows(["a", "b"], 3, "wine", "old")
    with engine.begin() as connection:
        connection.execute(insert(predictions), old)
    engine.dispose()
    store = PayloadStore(uri)
    store.write_predictions(rows(["a", "b"], 2, "wine", "new"))
    frame = collect(store, "wine", SINCE)
    store.close()
    assert len(frame) == 5 and frame[["a", "b"]].notna().all().all()
    assert frame["request_id"].tolist()[:3] == [r["request_id"] for r in old]


def test_concurrent_stores_register_a_new_set_once(any_store_uri: str) -> None:
    stores = [PayloadStore(any_store_uri) for _ in range(4)]
    names, name = unique_names(), model()
    meet = threading.Barrier(len(stores))

    def write(store: PayloadStore) -> None:
        prepared = store.prepare_predictions(rows(names, 50, name))
        meet.wait()
        store.write_prepared(prepared)

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(write, stores))  # re-raises a writer's error
        assert stored_sets(stores[0], names) == 1
        assert len(collect(stores[0], name, SINCE)) == 200
    finally:
        for store in stores:
            store.close()


def test_rolled_back_set_is_registered_again(any_store_uri: str) -> None:
    store = PayloadStore(any_store_uri)
    names, name = unique_names(), model()
    good, bad = rows(names, 2, name)
    with pytest.raises(IntegrityError):
        store.write_predictions([good, {**bad, "model_name": None}])
    assert stored_sets(store, names) == 0
    store.write_predictions([good])
    store.close()
    reader = PayloadStore(any_store_uri)  # knows no set: reads them from the table
    found = reader.find_prediction(good["request_id"])
    reader.close()
    assert found is not None and found.inputs["columns"] == names


def test_unknown_set_raises_naming_it(any_store_uri: str) -> None:
    store = PayloadStore(any_store_uri)
    names = unique_names(2)
    written = rows(names, 1, model())
    store.write_predictions(written)
    with store.engine.begin() as connection:  # a table edited by hand
        connection.execute(input_columns.delete()
                           .where(input_columns.c.key == column_set_key(names)))
    store.close()
    reader = PayloadStore(any_store_uri)
    with pytest.raises(UnknownColumnSet):
        reader.find_prediction(written[0]["request_id"])
    reader.close()


async def test_frames_of_two_column_sets_round_trip(any_store: PayloadStore) -> None:
    name = model()
    numeric, mixed = unique_names(2), unique_names(2)

    def record(request_id: str, frame: pd.DataFrame) -> PredictionRecord:
        return PredictionRecord(request_id=request_id, model_name=name, model_version="1",
                                endpoint="/predict", inputs=frame, predictions=[0],
                                annotations={}, latency_s=0.01, received_at=utc_now())

    frames = {  # one array (to_row's values) and a mixed frame (split_rows), interleaved
        f"{name}-n1": pd.DataFrame([[1.0, 2.0]], columns=numeric),
        f"{name}-m1": pd.DataFrame({mixed[0]: [3.0], mixed[1]: ["x"]}),
        f"{name}-n2": pd.DataFrame([[4.0, 5.0]], columns=numeric),
        f"{name}-m2": pd.DataFrame({mixed[0]: [6.0], mixed[1]: ["y"]}),
    }
    log = PayloadLog(any_store, MonitoringGauges(CollectorRegistry()), capacity=10,
                     flush_interval_s=60)
    for request_id, frame in frames.items():
        log.submit(record(request_id, frame))
    await log.aclose()
    for request_id, frame in frames.items():
        found = any_store.find_prediction(request_id)
        assert found is not None
        assert found.inputs == {"columns": list(frame.columns),
                                "data": frame.to_numpy().tolist()}
    assert stored_sets(any_store, numeric, mixed) == 2


def test_equal_column_indexes_share_one_list_of_names() -> None:
    # frames not built on the data plane's index (columns in another order, no signature)
    # bring a new index per request: the store recognises a set by its list's identity
    names = _ColumnNames()
    first = names(pd.Index(["a", "b"]))
    assert first == ["a", "b"]
    assert names(pd.Index(["a", "b"])) is first
    assert names(pd.Index(["b", "a"])) == ["b", "a"]
    assert names(pd.RangeIndex(2)) == ["0", "1"]
    assert names(pd.Index(["0", "1"])) == ["0", "1"]  # another dtype: listed again
    assert names(pd.Index(["a", 1])) == ["a", "1"]
    tuples = names(pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))
    assert tuples == ["('a', 1)", "('b', 2)"]
    assert names(pd.MultiIndex.from_tuples([("a", 1), ("b", 2)])) is tuples
    assert names(pd.Index(["a", "b"])) == ["a", "b"]
