"""A store written before batches: its rows are found, windowed and exported with the batches
logged after them, and the batches are numbered after them (drift snapshots compare ids)."""

from __future__ import annotations

import datetime
from typing import Any

from greenbutton.monitoring.export import collect
from greenbutton.monitoring.payload_batches import utc_now
from greenbutton.monitoring.payload_store import PayloadStore
from payload_rows import write_rows_before_batches

SINCE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def row(request_id: str, value: float) -> dict[str, Any]:
    return {"request_id": request_id, "model_name": "wine", "model_version": "2",
            "endpoint": "/predict", "inputs": {"columns": ["a"], "data": [[value]]},
            "predictions": [value * 10], "annotations": {"outliers": [None]},
            "has_outlier": False, "latency_s": value / 1000, "received_at": utc_now()}


def feedback(request_id: str, truth: Any) -> dict[str, Any]:
    return {"request_id": request_id, "model_name": "wine", "model_version": "2",
            "truth": truth, "reward": None, "is_correct": None, "abs_error": None,
            "received_at": utc_now()}


def test_rows_before_batches_read_with_the_batches_after_them(own_store: PayloadStore,
                                                              own_store_uri: str) -> None:
    write_rows_before_batches(own_store, [row("r0", 0.0), row("r1", 1.0), row("r2", 2.0)])
    upgraded = PayloadStore(own_store_uri)  # the first open after the upgrade
    try:
        upgraded.write_predictions([row("b0", 3.0)])
        upgraded.write_predictions([row("b1", 4.0)])
        upgraded.save_feedback(feedback("r1", 10.0), replace=False)
        upgraded.save_feedback(feedback("b1", 40.0), replace=False)

        found = [upgraded.find_prediction(i) for i in ("r1", "b0")]
        assert [f.inputs if f else None for f in found] == [
            {"columns": ["a"], "data": [[1.0]]}, {"columns": ["a"], "data": [[3.0]]}]
        assert upgraded.find_prediction("nowhere") is None

        window = upgraded.recent_predictions("wine", "2", 4)
        assert [w.inputs["data"] for w in window] == [[[1.0]], [[2.0]], [[3.0]], [[4.0]]]
        ids = [w.id for w in window]
        assert ids == sorted(set(ids)), "ids must grow from the rows into the batches"

        frame = collect(upgraded, "wine", SINCE)
        assert frame["request_id"].tolist() == ["r0", "r1", "r2", "b0", "b1"]
        assert frame["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert frame["truth"].tolist()[1::3] == [10.0, 40.0]
        assert str(frame["received_at"].dt.tz) == "UTC"
    finally:
        upgraded.close()
