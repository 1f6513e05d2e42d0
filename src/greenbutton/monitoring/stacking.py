"""Many answered predictions as one: stack their inputs and outputs, annotate them in one call.

Row annotators (outlier scores, adversarial flags) are row-wise, so scoring a thousand one-row
requests together gives the same values as scoring them one by one, for a fraction of the
cost. The payload log keeps what it buffers as :class:`Answered` entries and annotates those
whose endpoint did not render annotations::

    entry = Answered.of(record)                       # at submit: the DataFrame is let go
    annotations = annotate_records(annotators, entries)   # at flush: one dict per entry
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the seam is defined by serving; this module only uses it
    from ..dataplane.hooks import PredictionRecord, RowAnnotator

logger = logging.getLogger(__name__)


class Answered(NamedTuple):
    """A :class:`~greenbutton.dataplane.hooks.PredictionRecord` as a buffer keeps it.

    Inputs that are one numeric block are kept as that array and the (shared) columns index,
    not as a DataFrame: a payload log holds a second of traffic, and a thousand live
    DataFrames cost more than the rest of the log (the collector scans their objects, and
    the memory each new request gets is cold). Other inputs keep their frame.
    """

    request_id: str
    model_name: str
    model_version: str | None
    endpoint: str
    columns: pd.Index
    values: np.ndarray | None
    """The inputs as one array, or None when they are not one numeric block (see ``frame``)."""
    frame: pd.DataFrame | None
    predictions: Any
    annotations: dict[str, list[Any]]
    latency_s: float
    received_at: datetime.datetime

    @classmethod
    def of(cls, record: PredictionRecord) -> Answered:
        """The entry for ``record`` (its inputs' array is a view: nothing is copied)."""
        frame = record.inputs
        values = record.values  # the request's array, when the data plane had one
        if values is None or values.shape != frame.shape:
            values = frame.to_numpy() if _is_one_block(frame) else None
        if values is not None and values.dtype.kind not in "biuf":
            values = None
        return cls(record.request_id, record.model_name, record.model_version,
                   record.endpoint, frame.columns, values, frame if values is None else None,
                   record.predictions, record.annotations, record.latency_s,
                   record.received_at)

    @property
    def rows(self) -> int:
        """Number of input rows."""
        return len(self.values) if self.values is not None else len(self.inputs)

    @property
    def inputs(self) -> pd.DataFrame:
        """The inputs as a DataFrame (rebuilt from the array when kept as one)."""
        if self.frame is not None:
            return self.frame
        return pd.DataFrame(self.values, columns=self.columns)


def _is_one_block(frame: pd.DataFrame) -> bool:
    # pandas' own test (documented, 0.5 µs); frame.dtypes would cost 13 µs per request
    try:
        return bool(frame._is_homogeneous_type)
    except AttributeError:
        return False


def stack_inputs(entries: Sequence[Answered]) -> pd.DataFrame:
    """The inputs of entries, in order, in one frame with a fresh index.

    Entries kept as arrays of one dtype over the same columns (the data plane builds request
    frames on one shared index, so identity usually settles it) become one array; anything
    else goes through ``pd.concat``, which aligns columns by name.
    """
    first = entries[0]
    if first.values is not None:
        dtype, columns = first.values.dtype, first.columns
        blocks = [e.values for e in entries if e.values is not None and e.values.dtype == dtype
                  and (e.columns is columns or e.columns.equals(columns))]
        if len(blocks) == len(entries):
            return pd.DataFrame(np.concatenate(blocks), columns=columns)
    return pd.concat([e.inputs for e in entries], ignore_index=True)


def stack_predictions(predictions: Sequence[Any]) -> Any:
    """The outputs of several calls as one output of the same kind (ValueError if mixed)."""
    first = predictions[0]
    if all(isinstance(p, np.ndarray) for p in predictions):
        return np.concatenate(predictions)
    if isinstance(first, pd.DataFrame | pd.Series):
        return pd.concat(list(predictions), ignore_index=True)
    if all(isinstance(p, list) for p in predictions):
        return [value for p in predictions for value in p]
    return np.concatenate([np.atleast_1d(np.asarray(p)) for p in predictions])


def annotate_records(
    annotators: Sequence[RowAnnotator], records: Sequence[Answered]
) -> list[dict[str, list[Any]]]:
    """Each entry's annotations, the missing ones computed in one call per annotator.

    An entry keeps the values it already has (an entry missing none is given its own
    dict, not a copy). When stacking or a stacked call fails, the entries are annotated one
    by one, and an annotator failing on an entry gives ``None`` per row (as on the request
    path: a monitor's bug never loses the entry).
    """
    result = [r.annotations for r in records]
    for annotator in annotators:
        missing = [i for i, r in enumerate(records) if annotator.name not in r.annotations]
        if not missing:
            continue
        for i, values in zip(missing, _annotate(annotator, [records[i] for i in missing]),
                             strict=True):
            if result[i] is records[i].annotations:  # copied when first added to
                result[i] = dict(result[i])
            result[i][annotator.name] = values
    return result


def _annotate(annotator: RowAnnotator, records: list[Answered]) -> list[list[Any]]:
    values: list[list[Any]] = [[] for _ in records]
    for members in _same_columns(records):
        group = [records[i] for i in members]
        for i, row_values in zip(members, _annotate_group(annotator, group), strict=True):
            values[i] = row_values
    return values


def _same_columns(records: list[Answered]) -> list[list[int]]:
    """Positions of the entries grouped by their inputs' column names, in order."""
    names_of: dict[int, tuple[Any, ...]] = {}  # id(index) → names: indexes are shared
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, record in enumerate(records):
        columns = record.columns
        names = names_of.get(id(columns))
        if names is None:
            names = names_of[id(columns)] = tuple(columns.tolist())
        groups.setdefault(names, []).append(i)
    return list(groups.values())


def _annotate_group(annotator: RowAnnotator, records: list[Answered]) -> list[list[Any]]:
    try:
        frame = stack_inputs(records)
        values = list(annotator.annotate(frame, stack_predictions([r.predictions
                                                                    for r in records])))
        if len(values) != len(frame):
            raise ValueError(f"{len(values)} values for {len(frame)} rows")
    except Exception:
        logger.debug("annotating %d records together failed; one by one", len(records),
                     exc_info=True)
        return [_annotate_one(annotator, r) for r in records]
    split, start = [], 0
    for record in records:
        split.append(values[start:start + record.rows])
        start += record.rows
    return split


def _annotate_one(annotator: RowAnnotator, record: Answered) -> list[Any]:
    try:
        return list(annotator.annotate(record.inputs, record.predictions))
    except Exception:
        logger.exception("row annotator %r failed", annotator.name)
        return [None] * record.rows
