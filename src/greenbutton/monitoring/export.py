"""``greenbutton export``: the payload log (joined with feedback) as a training-ready dataset.

One row per scored input row: the features, then ``prediction``, ``is_outlier``,
``outlier_score``, ``truth``, ``reward``, ``request_id``, ``model_version``, ``received_at``.
"""

from __future__ import annotations

import datetime
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InvalidInput
from .payload_store import PayloadStore, utc_now

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """``7d`` / ``12h`` / ``30m`` before now, or an ISO timestamp (UTC if naive)."""
    match = DURATION.match(text)
    if match:
        delta = datetime.timedelta(**{UNITS[match[2]]: int(match[1])})
        return (now or utc_now()) - delta
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--since must be like 7d, 12h or an ISO time, got {text!r}",
                           field="since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    path: Path
    rows: int
    run_id: str | None = None


def collect(store: PayloadStore, name: str, since: datetime.datetime, *,
            exclude_outliers: bool = False, with_feedback: bool = False) -> pd.DataFrame:
    """The dataset as a DataFrame (``with_feedback``: only rows that have a truth or reward)."""
    rows: list[dict[str, Any]] = []
    for logged in store.iter_joined(name, since):
        columns, data = logged["inputs"]["columns"], logged["inputs"]["data"]
        outliers = logged["annotations"].get("outliers") or [None] * len(data)
        truths = _per_row(logged["truth"], len(data))
        outputs = _per_row(logged["predictions"], len(data))
        for i, values in enumerate(data):
            outlier = outliers[i] if isinstance(outliers[i], dict) else {}
            row = dict(zip(columns, values, strict=True))
            row.update(prediction=outputs[i],
                       is_outlier=outlier.get("is_outlier"), outlier_score=outlier.get("score"),
                       truth=truths[i], reward=logged["reward"],
                       request_id=logged["request_id"], model_version=logged["model_version"],
                       received_at=logged["received_at"])
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    if exclude_outliers:
        frame = frame[frame["is_outlier"] != True]  # noqa: E712  (None: not scored, kept)
    if with_feedback:
        frame = frame[frame["truth"].notna() | frame["reward"].notna()]
    return frame.reset_index(drop=True)


def export_dataset(store: PayloadStore, name: str, since: datetime.datetime, path: Path, *,
                   exclude_outliers: bool = False, with_feedback: bool = False,
                   log_to_mlflow: bool = False) -> ExportResult:
    """Write the dataset to ``path`` (``.parquet`` or ``.csv``), optionally log it to MLflow."""
    if path.suffix not in (".parquet", ".csv"):
        raise InvalidInput("export path must end in .parquet or .csv", field="path")
    frame = collect(store, name, since, exclude_outliers=exclude_outliers,
                    with_feedback=with_feedback)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False)
    partial.replace(path)  # write-then-rename: a reader never sees half a file
    run_id = _log_to_mlflow(frame, name, path) if log_to_mlflow else None
    return ExportResult(path, len(frame), run_id)


def _log_to_mlflow(frame: pd.DataFrame, name: str, path: Path) -> str:
    import mlflow
    import mlflow.data.pandas_dataset

    with mlflow.start_run(run_name=f"{name}-export") as run:
        with warnings.catch_warnings():
            # MLflow registers two identical local-file source classes and warns it picked one
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.pandas_dataset.from_pandas(
                frame, source=str(path.resolve()), name=f"{name}-payload-log")
        mlflow.log_input(dataset, context="training")
        return str(run.info.run_id)


def _per_row(value: Any, rows: int) -> list[Any]:
    if isinstance(value, list) and len(value) == rows:
        return value
    return [value] * rows
