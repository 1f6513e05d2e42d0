"""A fast path past MLflow's per-call schema enforcement, for inputs that are plainly valid.

``PyFuncModel.predict`` checks every column of every call against the signature, which for
a 64-column model costs several times the prediction itself. :class:`FastConformer`
handles the common case in one vectorised step: a column signature whose columns all have
the same numeric or boolean type, and a DataFrame holding those columns with dtypes that
cast safely. Anything else returns None and goes through MLflow's own enforcement, so
errors and edge cases keep MLflow's exact behaviour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import ColSpec, DataType, Schema

FAST_TYPES: dict[DataType, np.dtype[Any]] = {
    DataType.boolean: np.dtype(bool),
    DataType.integer: np.dtype(np.int32),
    DataType.long: np.dtype(np.int64),
    DataType.float: np.dtype(np.float32),
    DataType.double: np.dtype(np.float64),
}


class FastConformer:
    """Casts a plainly valid DataFrame to the signature's columns and dtype, else says None."""

    def __init__(self, names: list[str], dtype: np.dtype[Any]) -> None:
        self.names = names
        self.dtype = dtype
        self._name_index = pd.Index(names)
        self._name_set = frozenset(names)

    def index_for(self, columns: list[Any]) -> pd.Index | list[Any]:
        """The prebuilt column index when ``columns`` are the signature's names, in order.

        Building a DataFrame from a list of names converts it to an index on every call, which
        for 64 string columns costs several times the rest of the frame.
        """
        return self._name_index if columns == self.names else columns

    @classmethod
    def from_schema(cls, schema: Schema | None) -> FastConformer | None:
        """A conformer for ``schema``, or None when its shape is not the simple case."""
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        specs = schema.inputs
        if not all(isinstance(s, ColSpec) and s.required for s in specs):
            return None
        types = {s.type for s in specs}
        if len(types) != 1:
            return None
        only = types.pop()
        if not isinstance(only, DataType) or only not in FAST_TYPES:
            return None
        return cls([str(s.name) for s in specs], FAST_TYPES[only])

    def conform(self, frame: pd.DataFrame, *, is_parsed: bool = False) -> pd.DataFrame | None:
        """``frame`` with exactly the signature's columns in the signature's dtype, or None.

        ``is_parsed``: the frame was just parsed from JSON, where MLflow's parser itself casts
        integers to a float column's type, so any integer dtype is accepted for floats.
        """
        if not frame.columns.equals(self._name_index):
            if not self._name_set <= set(frame.columns):
                return None
            frame = frame[self.names]
        dtypes = set(frame.dtypes)
        if dtypes == {self.dtype}:
            return frame
        if not all(self._casts_safely(dtype, is_parsed) for dtype in dtypes):
            return None
        return frame.astype(self.dtype)

    def _casts_safely(self, dtype: Any, is_parsed: bool) -> bool:
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            return False
        if (dtype.kind == "b") != (self.dtype.kind == "b"):
            return False  # booleans are never numbers here, nor numbers booleans
        if dtype.kind in "iu" and self.dtype.kind == "f":
            # MLflow refuses int64 -> float64 at predict time (precision), casts when parsing
            return is_parsed or dtype.itemsize < self.dtype.itemsize
        return bool(np.can_cast(dtype, self.dtype, casting="safe"))


Built = tuple[pd.DataFrame, np.ndarray | None]
"""A conformed frame and, when the frame holds it as it is, the array of its rows."""


def frame_from_split(split: Any, conformer: FastConformer) -> Built | None:
    """A ``dataframe_split`` of plain numbers as a conformed DataFrame, built in one block."""
    if not isinstance(split, dict) or set(split) - {"columns", "data", "index"}:
        return None
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        return None
    try:
        array = np.asarray(data)
    except ValueError:  # ragged rows
        return None
    if array.ndim != 2 or array.shape[1] != len(columns) or array.dtype.kind not in "iuf":
        return None
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(array)):
        return None
    frame = pd.DataFrame(array, columns=conformer.index_for(columns), index=index)
    return _conformed(frame, array, conformer)


def frame_from_columns(columns: Any, conformer: FastConformer) -> Built | None:
    """``inputs``/``instances`` given as ``{column: [values]}`` as a conformed DataFrame."""
    if not isinstance(columns, dict) or not columns:
        return None
    if not all(isinstance(v, list) for v in columns.values()):
        return None
    try:
        array = np.asarray(list(columns.values()))
    except ValueError:  # columns of different lengths
        return None
    if array.ndim != 2 or array.dtype.kind not in "iuf":
        return None
    frame = pd.DataFrame(array.T, columns=conformer.index_for(list(columns)))
    return _conformed(frame, array.T, conformer)


def _conformed(frame: pd.DataFrame, rows: np.ndarray, conformer: FastConformer) -> Built | None:
    # ``rows`` stays the frame's array only when conforming changed nothing (no cast, no
    # reordered columns); sinks then log it without converting the frame back
    conformed = conformer.conform(frame, is_parsed=True)
    if conformed is None:
        return None
    return conformed, rows if conformed is frame else None
