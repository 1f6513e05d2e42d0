"""MLflow scoring payloads built into model input in a few vectorised NumPy steps.

MLflow's scoring server parses a payload into a DataFrame (pandas infers each column's dtype
from the JSON values), casts each column to the signature's type, and then enforces the
signature column by column. :class:`ScoringParser` does the same NumPy operations on plain
JSON numbers and booleans directly, for every input format and both signature kinds:

- column signatures (numeric and boolean ``ColSpec``\\s, required): ``dataframe_split`` with
  columns, ``dataframe_records``, ``inputs``/``instances`` as ``{column: [values]}`` and
  ``instances`` as ``[{column: value}]``;
- one unnamed tensor (``TensorSpec``, what a NumPy input example gives): ``inputs`` and
  ``instances`` as nested lists, ``dataframe_split`` with or without columns and
  ``dataframe_records`` whose rows name the same keys in the same order.

The result is what MLflow's enforcement hands the model, or None: anything else (strings,
optional columns, a value pandas would infer differently, a shape the signature refuses)
goes through MLflow's own parser and enforcement, so its answer and its errors stay MLflow's.
Nulls never reach the model through here: see :mod:`.nulls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import Schema

from .fastpath import (
    FastConformer,
    TensorConformer,
    array_of,
    fits,
    overflowed,
    refuse_unfit,
)

Built = tuple[Any, np.ndarray | None]
"""Model input and, when the input holds it as it is, the array of its rows."""
NUMBERS = frozenset({int, float})
INT64 = np.dtype(np.int64)
FLOAT64 = np.dtype(np.float64)


class ScoringParser:
    """Builds model input from one MLflow input format's value, else says None."""

    def __init__(self, columns: FastConformer | None, tensor: TensorConformer | None) -> None:
        self.columns = columns
        self.tensor = tensor

    @classmethod
    def from_schema(cls, schema: Schema | None) -> ScoringParser | None:
        """A parser for ``schema``, or None when no format of it has a fast path."""
        columns, tensor = FastConformer.from_schema(schema), TensorConformer.from_schema(schema)
        return cls(columns, tensor) if columns is not None or tensor is not None else None

    def parse(self, input_format: str, value: Any) -> Built | None:
        """``value`` of ``input_format`` as the model's input, or None for MLflow to parse."""
        try:
            if self.columns is not None:
                return _parse_columns(self.columns, input_format, value)
            if self.tensor is not None:
                return _parse_tensor(self.tensor, input_format, value)
        except (OverflowError, ValueError, TypeError):  # NumPy refusing a value: MLflow says why
            return None
        return None


def _parse_columns(conformer: FastConformer, input_format: str, value: Any) -> Built | None:
    if input_format == "dataframe_split":
        if not _is_split(value) or "columns" not in value:
            return None
        rows = _rows(value["data"])
        index = value.get("index")
        if rows is None or (index is not None and _index_length(index) != len(rows)):
            return None
        return _frame_from_rows(conformer, value["columns"], rows, index)
    if input_format == "instances" and _is_dicts(value):
        # MLflow builds one array per key: rows naming other keys are its to refuse
        if not all(row.keys() == conformer._name_set for row in value):
            return None
    if input_format == "dataframe_records" or (input_format == "instances" and _is_dicts(value)):
        rows = _rows_of_records(conformer, value)
        return None if rows is None else _frame_from_rows(conformer, conformer.names, rows, None)
    if input_format in ("inputs", "instances") and type(value) is dict:
        return _frame_from_columns(conformer, value)
    return None


def _is_split(value: Any) -> bool:
    return type(value) is dict and "data" in value and value.keys() <= {"columns", "data", "index"}


def _rows(data: Any) -> list[Any] | None:
    if type(data) is not list or not data or not all(type(row) is list for row in data):
        return None
    return data


def _index_length(index: Any) -> int:
    return len(index) if type(index) is list else -1


def _is_dicts(value: Any) -> bool:
    return type(value) is list and bool(value) and all(type(row) is dict for row in value)


def _rows_of_records(conformer: FastConformer, records: Any) -> list[Any] | None:
    # each record's values in the signature's order; extra keys are ignored as MLflow does
    if not _is_dicts(records):
        return None
    names = conformer._name_set
    if not all(names <= row.keys() for row in records):
        return None  # a missing value: pandas makes it NaN, MLflow's parse says what follows
    if len(conformer.names) == 1:
        return [[row[conformer.names[0]]] for row in records]
    return list(map(itemgetter(*conformer.names), records))


def _frame_from_rows(
    conformer: FastConformer, columns: Any, rows: list[Any], index: Any
) -> Built | None:
    # pandas infers each column from its values (int64 for integers, float64 when any is a
    # float), MLflow then casts each to the signature's dtype: the same two steps here
    if type(columns) is not list or len(columns) != len(set(columns)):
        return None
    width = len(columns)
    if not all(len(row) == width for row in rows) or not conformer._name_set <= set(columns):
        return None
    kinds = set(map(type, chain.from_iterable(rows)))
    uniform = conformer.dtype
    if uniform is not None and uniform == FLOAT64 and kinds <= NUMBERS and float in kinds:
        return _conformed(conformer, np.array(rows, dtype=FLOAT64), columns, index)
    if uniform is not None and kinds == _exact_kind(uniform):
        array = np.array(rows, dtype=_inferred(kinds))
        if not fits(array, uniform):  # name the column (a column not asked for is dropped)
            for position, name in enumerate(columns):
                if name in conformer._name_set:
                    refuse_unfit(name, array[:, position], uniform)
        return _conformed(conformer, array.astype(uniform, copy=False), columns, index)
    by_name = dict(zip(columns, zip(*rows, strict=True), strict=True))
    arrays = {}
    for name, dtype in zip(conformer.names, conformer.dtypes, strict=True):
        cells = by_name[name]
        inferred = _inferred(set(map(type, cells)))
        if inferred is None or (inferred.kind == "b") != (dtype.kind == "b"):
            return None
        array = np.array(cells, dtype=inferred)
        if dtype.kind != "f" and inferred.kind == "f" and not np.isfinite(array).all():
            return None  # pandas refuses to cast NaN or inf to integers, NumPy does not
        refuse_unfit(name, array, dtype)
        arrays[name] = array.astype(dtype, copy=False)
    frame = pd.DataFrame(arrays, columns=conformer.index_for(conformer.names), index=index)
    return frame, None


def _exact_kind(dtype: np.dtype[Any]) -> frozenset[type]:
    return frozenset({bool}) if dtype.kind == "b" else frozenset({int})


def _inferred(kinds: set[type] | frozenset[type]) -> np.dtype[Any] | None:
    # the dtype pandas gives a column of these JSON value types (None: not a plain case)
    if kinds == {bool}:
        return np.dtype(bool)
    if kinds == {int}:
        return INT64
    if kinds and kinds <= NUMBERS:
        return FLOAT64
    return None


def _conformed(
    conformer: FastConformer, array: np.ndarray, columns: list[Any], index: Any
) -> Built | None:
    if array.ndim != 2 or array.shape[1] != len(columns):
        return None
    frame = pd.DataFrame(array, columns=conformer.index_for(columns), index=index)
    conformed = conformer.conform(frame, is_parsed=True)
    if conformed is None:
        return None
    # the rows array is the frame's own only when conforming changed nothing
    return conformed, array if conformed is frame else None


def _frame_from_columns(conformer: FastConformer, value: dict[str, Any]) -> Built | None:
    # MLflow converts each column with np.array(values, dtype=column type): the same here
    if value.keys() != conformer._name_set:
        return None  # MLflow converts extra keys too, and may refuse them
    if not all(type(value[name]) is list for name in conformer.names):
        return None
    if conformer.dtype is not None:
        for name in conformer.names:  # bool <-> number casts are MLflow's to explain
            if not _fits(set(map(type, value[name])), conformer.dtype):
                return None
        array = array_of([value[name] for name in conformer.names], conformer.dtype)
        if array.ndim != 2:
            return None
        if overflowed(array):
            for name in conformer.names:
                refuse_unfit(name, np.array(value[name], dtype=FLOAT64), conformer.dtype)
        frame = pd.DataFrame(array.T, columns=conformer.index_for(conformer.names))
        return frame, array.T
    arrays = {}
    for name, dtype in zip(conformer.names, conformer.dtypes, strict=True):
        cells = value[name]
        if not cells or not _fits(set(map(type, cells)), dtype):
            return None
        arrays[name] = array_of(cells, dtype)
        if overflowed(arrays[name]):
            refuse_unfit(name, np.array(cells, dtype=FLOAT64), dtype)
    if len({len(a) for a in arrays.values()}) != 1:
        return None
    return pd.DataFrame(arrays, columns=conformer.index_for(conformer.names)), None


def _fits(kinds: set[type], dtype: np.dtype[Any]) -> bool:
    if dtype.kind == "b":
        return kinds == {bool}
    if dtype.kind in "iu":
        return kinds == {int}
    return bool(kinds) and kinds <= NUMBERS


def _parse_tensor(tensor: TensorConformer, input_format: str, value: Any) -> Built | None:
    if input_format in ("inputs", "instances"):
        if type(value) is not list or not value or _has_dicts(value):
            return None
        array = array_of(value, tensor.dtype)  # what MLflow's parser calls
        if overflowed(array):
            refuse_unfit(input_format, np.array(value, dtype=FLOAT64), tensor.dtype)
        conformed = tensor.conform(array)
        return None if conformed is None else (conformed, conformed)
    if input_format == "dataframe_split":
        rows = _rows(value.get("data")) if _is_split(value) else None
        if rows is None or not _fits_split(value, rows):
            return None
        return _tensor_from_rows(tensor, rows)
    if input_format == "dataframe_records" and _is_dicts(value):
        keys = list(value[0])
        if not all(list(row) == keys for row in value):
            return None
        return _tensor_from_rows(tensor, [list(row.values()) for row in value])
    return None


def _fits_split(split: dict[str, Any], rows: list[Any]) -> bool:
    # what pandas checks when MLflow builds the frame (the index and names are then dropped)
    columns, index = split.get("columns"), split.get("index")
    if columns is not None and (
        type(columns) is not list
        or len(columns) != len(rows[0])
        or len(set(map(str, columns))) != len(columns)
    ):
        return False
    return index is None or _index_length(index) == len(rows)


def _has_dicts(value: list[Any]) -> bool:
    return any(type(item) is dict for item in value)


def _tensor_from_rows(tensor: TensorConformer, rows: list[Sequence[Any]]) -> Built | None:
    # pandas infers each column, MLflow casts it to the tensor's dtype and takes to_numpy()
    width = len(rows[0])
    if width < 2 or tensor.shape != (-1, width) or not all(len(r) == width for r in rows):
        return None  # one column is reshaped by MLflow's own rules
    columns = list(zip(*rows, strict=True))
    inferred = [_inferred(set(map(type, cells))) for cells in columns]
    if any(dtype is None or dtype.kind == "b" for dtype in inferred):
        return None
    if tensor.dtype.kind != "f" and FLOAT64 in inferred:
        return None  # pandas refuses to cast inf or NaN to integers, NumPy does not
    if all(dtype is FLOAT64 for dtype in inferred) or tensor.dtype == FLOAT64:
        raw = np.array(rows, dtype=FLOAT64)
        if not fits(raw, tensor.dtype):
            for position in range(width):
                refuse_unfit(f"column {position}", raw[:, position], tensor.dtype)
        array = raw.astype(tensor.dtype, copy=False)
    else:
        parts = [np.array(c, dtype=d) for c, d in zip(columns, inferred, strict=True)]
        for position, part in enumerate(parts):
            refuse_unfit(f"column {position}", part, tensor.dtype)
        array = np.column_stack([part.astype(tensor.dtype) for part in parts])
    conformed = tensor.conform(array)
    return None if conformed is None else (conformed, conformed)
