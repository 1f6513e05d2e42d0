"""greenbutton export in chunks: any size of payload log in about one chunk of memory, the
same dataset as one frame would give, even when columns and types change between versions."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greenbutton.cli.monitoring import Progress
from greenbutton.config import Settings
from greenbutton.monitoring.export import (
    ExportError,
    chunks,
    collect,
    export_dataset,
    parse_since,
)
from greenbutton.monitoring.payload_batches import utc_now
from greenbutton.monitoring.payload_store import PayloadStore
from payload_rows import write_rows_before_batches

SINCE = parse_since("1d")


def logged(model: str, version: str, columns: list[str], data: list[list[Any]],
           predictions: list[Any]) -> dict[str, Any]:
    return {"request_id": f"x-{uuid.uuid4().hex}", "model_name": model,
            "model_version": version, "endpoint": "/predict",
            "inputs": {"columns": columns, "data": data}, "predictions": predictions,
            "annotations": {"outliers": [{"is_outlier": False, "score": 1.0}] * len(data)},
            "has_outlier": False, "latency_s": 0.001, "received_at": utc_now()}


def two_versions(store: PayloadStore, model: str) -> None:
    """Version 1: columns a, b and integer predictions; version 2 adds c, predicts floats."""
    store.write_predictions(
        [logged(model, "1", ["a", "b"], [[float(i), 1.0]], [i]) for i in range(3)]
        + [logged(model, "2", ["a", "b", "c"], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [0.5, 1.5]),
           logged(model, "2", ["a", "b", "c"], [[7.0, 8.0, 9.0]], [2.5])])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_in_chunks_writes_what_one_frame_holds(
    any_store: PayloadStore, tmp_path: Path, suffix: str
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    two_versions(any_store, model)
    whole = collect(any_store, model, SINCE)
    assert len(list(chunks(any_store, model, SINCE, rows_per_chunk=2))) == 3
    out = tmp_path / "out"
    result = export_dataset(any_store, model, SINCE, out / f"d{suffix}", rows_per_chunk=2)
    exported = (pd.read_parquet(result.path) if suffix == ".parquet"
                else pd.read_csv(result.path))
    assert result.rows == len(exported) == len(whole) == 6
    assert list(exported.columns) == list(whole.columns)
    assert list(exported.columns[-1:]) == ["c"]  # a later version's column, after the rest
    assert exported["request_id"].tolist() == whole["request_id"].tolist()
    assert exported["prediction"].tolist() == [0.0, 1.0, 2.0, 0.5, 1.5, 2.5]  # widened
    assert np.isnan(exported["c"].iloc[:3]).all() and exported["c"].iloc[3:].tolist() == [
        3.0, 6.0, 9.0]
    assert exported[["a", "b"]].to_numpy().tolist() == whole[["a", "b"]].to_numpy().tolist()
    assert [p.name for p in out.iterdir()] == [f"d{suffix}"]  # no parts left


def test_export_filters_each_chunk(payload_store: PayloadStore, tmp_path: Path) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    rows = [logged(model, "1", ["a"], [[float(i)]], [i]) for i in range(5)]
    rows[1]["annotations"] = rows[3]["annotations"] = {
        "outliers": [{"is_outlier": True, "score": 9.0}]}
    payload_store.write_predictions(rows)
    result = export_dataset(payload_store, model, SINCE, tmp_path / "d.parquet",
                            exclude_outliers=True, rows_per_chunk=2)
    assert pd.read_parquet(result.path)["a"].tolist() == [0.0, 2.0, 4.0]
    assert result.rows == 3


def test_export_of_types_that_do_not_combine_names_the_column_and_leaves_nothing(
    payload_store: PayloadStore, tmp_path: Path
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    payload_store.write_predictions([logged(model, "1", ["a"], [[1.0]], [3]),
                                     logged(model, "2", ["a"], [[2.0]], ["cat"])])
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="prediction") as raised:
        export_dataset(payload_store, model, SINCE, out / "d.parquet", rows_per_chunk=1)
    assert "--since" in raised.value.message
    assert list(out.iterdir()) == []


def test_export_with_no_rows_writes_an_empty_dataset(
    payload_store: PayloadStore, tmp_path: Path
) -> None:
    result = export_dataset(payload_store, "nobody", SINCE, tmp_path / "d.parquet")
    assert result.rows == 0 and pd.read_parquet(result.path).empty


def test_dataset_keeps_mixed_features_and_the_meta_columns_win_a_name_clash(
    payload_store: PayloadStore,
) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    payload_store.write_predictions([
        logged(model, "1", ["a", "b", "prediction"], [[1.0, "x", 0.0], [None, "y", 0.0]],
               [7, 8])])
    frame = collect(payload_store, model, SINCE)
    assert list(frame.columns[:3]) == ["a", "b", "prediction"]
    assert frame["a"].iloc[0] == 1.0 and np.isnan(frame["a"].iloc[1])
    assert frame["b"].tolist() == ["x", "y"] and frame["prediction"].tolist() == [7, 8]
    assert frame["is_outlier"].tolist() == [False, False]


def test_rows_older_versions_wrote_with_nan_tokens_still_read(tmp_path: Path) -> None:
    # before orjson, the stdlib encoder wrote NaN and Infinity as bare tokens (SQLite only:
    # PostgreSQL's JSON type never accepted them)
    store = PayloadStore(f"sqlite:///{tmp_path / 'old.db'}")
    row = logged("old", "1", ["a", "b"], [[0.0, 0.0]], [1.0])
    write_rows_before_batches(store, [row])
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE gb_predictions SET inputs = ?, predictions = ?",
            ('{"columns": ["a", "b"], "data": [[NaN, Infinity]]}', "[NaN]"))
    found = store.find_prediction(row["request_id"])
    store.close()
    assert found is not None and np.isnan(found.inputs["data"][0][0])
    assert found.inputs["data"][0][1] == np.inf and np.isnan(found.predictions[0])


def test_cli_export_writes_the_file_and_says_how_many_rows(
    settings: Settings, payload_store: PayloadStore, tmp_path: Path
) -> None:
    two_versions(payload_store, "wine")
    out = tmp_path / "out" / "wine.csv"
    env = {**os.environ, **settings.environ()}
    done = subprocess.run(
        [sys.executable, "-m", "greenbutton", "export", "wine", "--since", "1h", "--output",
         str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"wrote 6 rows to {out}"
    assert len(pd.read_csv(out)) == 6
    refused = subprocess.run(
        [sys.executable, "-m", "greenbutton", "export", "wine", "--output", str(out) + ".json"],
        env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "must end in .parquet or .csv" in refused.stderr


def test_progress_is_reported_per_chunk_and_printed_at_most_every_interval(
    payload_store: PayloadStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_versions(payload_store, "wine")
    seen: list[int] = []
    export_dataset(payload_store, "wine", SINCE, tmp_path / "out" / "d.parquet",
                   rows_per_chunk=2, on_progress=seen.append)
    assert seen == [2, 5, 6]  # a request's rows stay together: the second chunk has 3
    now = [0.0]
    progress = Progress(interval_s=10.0, clock=lambda: now[0])
    for rows, at in [(10_000, 5.0), (20_000, 10.0), (30_000, 15.0), (40_000, 20.5)]:
        now[0] = at
        progress(rows)
    assert capsys.readouterr().err.splitlines() == ["... 20,000 rows so far",
                                                    "... 40,000 rows so far"]
