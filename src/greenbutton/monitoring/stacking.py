"""Many answered predictions as one: stack their inputs and outputs, annotate them in one call.

Row annotators (outlier scores, adversarial flags) are row-wise, so scoring a thousand one-row
requests together gives the same values as scoring them one by one, for a fraction of the
cost. The payload log uses this for records whose endpoint did not render annotations::

    annotations = annotate_records(annotators, records)   # one dict per record
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the seam is defined by serving; this module only uses it
    from ..serving.hooks import PredictionRecord, RowAnnotator

logger = logging.getLogger(__name__)


def stack_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` in order, in one frame with a fresh index.

    Frames sharing one columns index (the data plane builds them so) with a single numeric
    dtype are stacked as one array; anything else goes through ``pd.concat``.
    """
    first = frames[0]
    columns = first.columns
    dtypes = set(first.dtypes)
    if len(dtypes) == 1 and all(f.columns is columns for f in frames):
        dtype = dtypes.pop()
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
            blocks = [f.to_numpy() for f in frames]
            if all(b.dtype == dtype for b in blocks):
                return pd.DataFrame(np.concatenate(blocks), columns=columns)
    return pd.concat(frames, ignore_index=True)


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
    annotators: Sequence[RowAnnotator], records: Sequence[PredictionRecord]
) -> list[dict[str, list[Any]]]:
    """Each record's annotations, the missing ones computed in one call per annotator.

    A record keeps the values it already has. When stacking or a stacked call fails, the
    records are annotated one by one, and an annotator failing on a record gives ``None``
    per row (as on the request path: a monitor's bug never loses the record).
    """
    result = [dict(r.annotations) for r in records]
    for annotator in annotators:
        missing = [i for i, r in enumerate(records) if annotator.name not in r.annotations]
        if not missing:
            continue
        for i, values in zip(missing, _annotate(annotator, [records[i] for i in missing]),
                             strict=True):
            result[i][annotator.name] = values
    return result


def _annotate(annotator: RowAnnotator, records: list[PredictionRecord]) -> list[list[Any]]:
    values: list[list[Any]] = [[] for _ in records]
    for members in _same_columns(records):
        group = [records[i] for i in members]
        for i, row_values in zip(members, _annotate_group(annotator, group), strict=True):
            values[i] = row_values
    return values


def _same_columns(records: list[PredictionRecord]) -> list[list[int]]:
    """Positions of the records grouped by their inputs' column names, in order."""
    names_of: dict[int, tuple[Any, ...]] = {}  # id(index) → names: indexes are shared
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, record in enumerate(records):
        columns = record.inputs.columns
        names = names_of.get(id(columns))
        if names is None:
            names = names_of[id(columns)] = tuple(columns.tolist())
        groups.setdefault(names, []).append(i)
    return list(groups.values())


def _annotate_group(annotator: RowAnnotator, records: list[PredictionRecord]) -> list[list[Any]]:
    try:
        frame = stack_frames([r.inputs for r in records])
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
        split.append(values[start:start + len(record.inputs)])
        start += len(record.inputs)
    return split


def _annotate_one(annotator: RowAnnotator, record: PredictionRecord) -> list[Any]:
    try:
        return list(annotator.annotate(record.inputs, record.predictions))
    except Exception:
        logger.exception("row annotator %r failed", annotator.name)
        return [None] * len(record.inputs)
