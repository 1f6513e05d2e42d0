"""``greenbutton export``: the payload log (joined with feedback) as a training-ready dataset.

One row per scored input row: the features, then ``prediction``, ``is_outlier``,
``outlier_score``, ``truth``, ``reward``, ``request_id``, ``model_version``, ``received_at``.

A week of traffic can be millions of rows, more than fits in memory as Python objects, so the
rows are read and written in chunks of ``CHUNK_ROWS``. Each chunk is first written as a
Parquet part (its own column types), and the parts are then copied into the one output file
under their unified schema: a column that first appears in a later chunk (another version's
signature) or whose type widens (an integer prediction, later a float) is handled as the
whole dataset in one frame would have been.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import GreenbuttonError, InvalidInput
from .payload_batches import utc_now
from .payload_store import PayloadStore

logger = logging.getLogger(__name__)
CHUNK_ROWS = 10_000
"""Dataset rows held in memory at once (about 60 MB for 64 features)."""

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


class ExportError(GreenbuttonError):
    """The logged rows cannot be written as one dataset."""


def collect(store: PayloadStore, name: str, since: datetime.datetime, *,
            exclude_outliers: bool = False, with_feedback: bool = False) -> pd.DataFrame:
    """The dataset as one DataFrame (``with_feedback``: only rows that have a truth or
    reward); for what fits in memory; :func:`export_dataset` writes any size."""
    parts = list(chunks(store, name, since, exclude_outliers=exclude_outliers,
                        with_feedback=with_feedback))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def chunks(store: PayloadStore, name: str, since: datetime.datetime, *,
           exclude_outliers: bool = False, with_feedback: bool = False,
           rows_per_chunk: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The dataset in frames of about ``rows_per_chunk`` rows (before filtering), in log
    order; frames left empty by the filters are skipped."""
    rows: list[dict[str, Any]] = []
    for logged in store.iter_joined(name, since):
        rows.extend(_dataset_rows(logged))
        if len(rows) >= rows_per_chunk:
            frame = _filtered(rows, exclude_outliers, with_feedback)
            rows = []
            if not frame.empty:
                yield frame
    if rows:
        frame = _filtered(rows, exclude_outliers, with_feedback)
        if not frame.empty:
            yield frame


def _dataset_rows(logged: dict[str, Any]) -> Iterator[dict[str, Any]]:
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
        yield row


def _filtered(rows: list[dict[str, Any]], exclude_outliers: bool,
              with_feedback: bool) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    # UTC on every backend (SQLite gives the stored UTC time without its zone)
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    if exclude_outliers:
        frame = frame[frame["is_outlier"] != True]  # noqa: E712  (None: not scored, kept)
    if with_feedback:
        frame = frame[frame["truth"].notna() | frame["reward"].notna()]
    return frame.reset_index(drop=True)


def export_dataset(store: PayloadStore, name: str, since: datetime.datetime, path: Path, *,
                   exclude_outliers: bool = False, with_feedback: bool = False,
                   log_to_mlflow: bool = False, rows_per_chunk: int = CHUNK_ROWS,
                   on_progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write the dataset to ``path`` (``.parquet`` or ``.csv``), optionally log it to MLflow.

    Memory stays about one chunk whatever the dataset's size; ``path`` appears complete or
    not at all (written beside it, then renamed). ``on_progress`` is called with the rows
    gathered so far after each chunk.
    """
    if path.suffix not in (".parquet", ".csv"):
        raise InvalidInput("export path must end in .parquet or .csv", field="path")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as folder:
            parts, gathered = [], 0
            for i, frame in enumerate(chunks(store, name, since,
                                             exclude_outliers=exclude_outliers,
                                             with_feedback=with_feedback,
                                             rows_per_chunk=rows_per_chunk)):
                parts.append(Path(folder) / f"{i:06d}.parquet")
                pq.write_table(_table(frame), parts[-1])
                gathered += len(frame)
                if on_progress is not None:
                    on_progress(gathered)
            rows = _combine(parts, partial, csv=path.suffix == ".csv")
        partial.replace(path)  # write-then-rename: a reader never sees half a file
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    run_id = _log_to_mlflow(path, rows, name) if log_to_mlflow else None
    return ExportResult(path, rows, run_id)


def _utc_wall_times(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
    """``frame`` with its time-zone-aware columns as UTC wall times, and those columns.

    pyarrow and MLflow read such a column through an accessor pandas 3.1 deprecates (a
    warning, an error in the suite); they get the plain times instead.
    """
    aware = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    plain = frame.copy(deep=False)
    for column in aware:
        plain[column] = frame[column].dt.tz_convert(None)
    return plain, aware


def _table(frame: pd.DataFrame) -> pa.Table:
    plain, aware = _utc_wall_times(frame)  # their zone is put back in Arrow, below
    try:
        table = pa.Table.from_pandas(plain, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ExportError(f"cannot write the logged rows as a table: {error}") from None
    for column in aware:
        i = table.schema.get_field_index(column)
        unit = table.schema.field(i).type.unit
        table = table.set_column(i, column, table.column(i).cast(pa.timestamp(unit, tz="UTC")))
    return table


def _combine(parts: list[Path], target: Path, *, csv: bool) -> int:
    """Copy the Parquet ``parts`` into ``target`` under their unified schema; its rows."""
    if not parts:  # nothing logged (or nothing left by the filters): an empty dataset
        if csv:
            pd.DataFrame().to_csv(target, index=False)
        else:
            pd.DataFrame().to_parquet(target, index=False)
        return 0
    try:
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts],
                                  promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ExportError("the exported rows' columns have types that do not combine (rows "
                          f"from several model versions?); narrow --since: {error}") from None
    schema = schema.remove_metadata()  # each part's pandas metadata names only its columns
    rows = 0
    with target.open("wb") as out:
        writer = None if csv else pq.ParquetWriter(out, schema)
        try:
            for i, part in enumerate(parts):
                table = _conform(pq.read_table(part), schema)
                rows += table.num_rows
                if writer is not None:
                    writer.write_table(table)
                else:
                    table.to_pandas().to_csv(out, header=i == 0, index=False)
        finally:
            if writer is not None:
                writer.close()
    return rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in its order (absent ones null) and types."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _log_to_mlflow(path: Path, rows: int, name: str) -> str:
    """Log the written file as a dataset input of a new run (its schema and a digest of its
    bytes, not its data: the file may be larger than memory)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():
        # MLflow registers two identical local-file source classes and warns it picked one
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(path.resolve()))
    dataset = _exported_dataset(source, name=f"{name}-payload-log", digest=_digest(path),
                                schema=_schema(path), rows=rows)
    with mlflow.start_run(run_name=f"{name}-export") as run:
        mlflow.log_input(dataset, context="training")
        return str(run.info.run_id)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()[:8]  # MLflow's datasets carry 8 hex digits


def _schema(path: Path) -> Any:
    """MLflow's column schema, inferred from the first rows of the written file."""
    from mlflow.models import infer_signature

    if path.suffix == ".csv":
        try:
            head = pd.read_csv(path, nrows=1000)
        except pd.errors.EmptyDataError:
            return None
    else:
        file = pq.ParquetFile(path)
        if not file.metadata.num_rows:
            return None
        head = next(file.iter_batches(batch_size=1000)).to_pandas()
    head, _ = _utc_wall_times(head)
    try:
        with warnings.catch_warnings():  # its advice on integer columns is for model inputs
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer",
                                    UserWarning)
            return infer_signature(head).inputs
    except Exception as error:  # as mlflow.data.from_pandas: logged without a schema
        logger.warning("no schema for the exported dataset: %s", error)
        return None


def _exported_dataset(source: Any, *, name: str, digest: str, schema: Any, rows: int) -> Any:
    """An MLflow dataset of the file's metadata, with its row count as the profile."""
    from mlflow.data.meta_dataset import MetaDataset

    class ExportedDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": rows}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return ExportedDataset(source, name=name, digest=digest, schema=schema)


def _per_row(value: Any, rows: int) -> list[Any]:
    if isinstance(value, list) and len(value) == rows:
        return value
    return [value] * rows
