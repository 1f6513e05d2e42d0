"""greenbutton's ``/predict`` request, derived from a model's column signature.

A request is ``{"inputs": [row, ...], "params": {...}}`` where each row is either an object
keyed by column name or an array of values in column order. :class:`RequestSchema` turns a
request into a pandas DataFrame with the signature's dtypes and describes it as JSON Schema.
Checks run column by column (one ``set(map(type, column))`` per column), not cell by cell.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from mlflow.types.schema import DataType, ParamSchema, Schema, TensorSpec

from ..errors import PayloadTooLarge, SchemaMismatch
from .fastpath import array_of, overflowed

JSON_TYPE_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    type(None): "null",
    list: "array",
    dict: "object",
}
ACCEPTED_TYPES: dict[DataType, frozenset[type]] = {
    DataType.boolean: frozenset({bool}),
    DataType.integer: frozenset({int}),
    DataType.long: frozenset({int}),
    DataType.float: frozenset({int, float}),
    DataType.double: frozenset({int, float}),
    DataType.string: frozenset({str}),
    DataType.binary: frozenset({str}),
    DataType.datetime: frozenset({str}),
}
COLUMN_JSON_SCHEMAS: dict[DataType, dict[str, Any]] = {
    DataType.boolean: {"type": "boolean"},
    DataType.integer: {"type": "integer", "format": "int32"},
    DataType.long: {"type": "integer", "format": "int64"},
    DataType.float: {"type": "number", "format": "float"},
    DataType.double: {"type": "number", "format": "double"},
    DataType.string: {"type": "string"},
    DataType.binary: {"type": "string", "contentEncoding": "base64"},
    DataType.datetime: {"type": "string", "format": "date-time"},
}
REQUEST_FIELDS = frozenset({"inputs", "params"})
UNIFORM_TYPES = frozenset(
    {DataType.boolean, DataType.integer, DataType.long, DataType.float, DataType.double}
)


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type (``number``, ``string``, ...)."""
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Column:
    """One input column of a signature; ``type`` is None for nested types passed through as is."""

    name: str
    type: DataType | None
    is_required: bool = True

    def json_schema(self) -> dict[str, Any]:
        """This column's values as JSON Schema."""
        schema = dict(COLUMN_JSON_SCHEMAS[self.type]) if self.type is not None else {}
        if not self.is_required and "type" in schema:
            schema["type"] = [schema["type"], "null"]
        return schema

    def to_array(self, values: Sequence[Any]) -> Any:
        """Check ``values`` against this column's type and convert them to its dtype."""
        if self.type is None:
            return pd.Series(values, dtype=object)
        kinds = set(map(type, values))
        has_nulls = type(None) in kinds
        accepted = ACCEPTED_TYPES[self.type] | (set() if self.is_required else {type(None)})
        if not kinds <= accepted:
            index = next(i for i, v in enumerate(values) if type(v) not in accepted)
            self._reject(index, values[index])
        if self.type is DataType.binary:
            decoded = [self._decode_base64(i, v) for i, v in enumerate(values)]
            return pd.Series(decoded, dtype=object)
        if self.type is DataType.datetime:
            return pd.Series([self._parse_datetime(i, v) for i, v in enumerate(values)])
        if self.type is DataType.string or (
            has_nulls and self.type is not DataType.float and self.type is not DataType.double
        ):
            return pd.Series(values, dtype=object)
        try:
            array = array_of(values, self.type.to_numpy())
        except OverflowError:
            limits = np.iinfo(self.type.to_numpy())
            index = next(i for i, v in enumerate(values) if not limits.min <= v <= limits.max)
            raise self._mismatch(index, f"integer out of range for {self.type.name}") from None
        if overflowed(array):
            past = [i for i, v in enumerate(values)
                    if np.isinf(array[i]) and abs(v) != float("inf")]
            if past:
                raise self._mismatch(past[0], f"number out of range for {self.type.name}")
        return array

    def _reject(self, index: int, value: Any) -> NoReturn:
        expected = COLUMN_JSON_SCHEMAS[self.type]["type"] if self.type is not None else "any"
        raise self._mismatch(index, f"expected {expected}, got {json_type_name(value)}")

    def _mismatch(self, index: int, problem: str) -> SchemaMismatch:
        field = f"inputs[{index}].{self.name}"
        return SchemaMismatch(f"{field}: {problem}", field=field)

    def _decode_base64(self, index: int, value: str | None) -> bytes | None:
        try:
            return None if value is None else base64.b64decode(value, validate=True)
        except binascii.Error:
            raise self._mismatch(index, "expected a base64-encoded string") from None

    def _parse_datetime(self, index: int, value: str | None) -> pd.Timestamp | None:
        try:
            return None if value is None else pd.Timestamp(value)
        except ValueError:
            raise self._mismatch(index, "expected an ISO 8601 date-time") from None


def _numeric_matrix(schema: Schema | None) -> TensorSpec | None:
    # a (-1, n) numeric tensor with n >= 2, the spec a NumPy table's input example gives
    if schema is None or not schema.is_tensor_spec() or schema.has_input_names():
        return None
    spec = schema.inputs[0]
    if len(schema.inputs) != 1 or not isinstance(spec, TensorSpec):
        return None
    shape = tuple(spec.shape)
    if len(shape) != 2 or shape[0] != -1 or shape[1] < 2 or spec.type.kind not in "iuf":
        return None
    return spec


class RequestSchema:
    """Validates ``/predict`` requests against a column signature and builds model input."""

    def __init__(
        self, columns: Sequence[Column] | None, *, params: ParamSchema | None, max_rows: int,
        tensor: TensorSpec | None = None,
    ) -> None:
        self.columns = list(columns) if columns is not None else None
        self.tensor = tensor
        """One unnamed 2-D numeric tensor (a NumPy input example): rows are arrays of numbers."""
        self.params = params
        self.max_rows = max_rows
        names = [column.name for column in self.columns or ()]
        # built once: a DataFrame given a list of names builds an index from it every call
        self._index = pd.Index(names)
        self._names = frozenset(names)
        self._required = frozenset(c.name for c in self.columns or () if c.is_required)
        self._row_getter = itemgetter(*names) if len(names) > 1 else None
        types = {column.type for column in self.columns or ()}
        is_uniform = len(types) == 1 and self._required == self._names
        self._uniform_type = types.pop() if is_uniform and types <= UNIFORM_TYPES else None

    @classmethod
    def from_mlflow(
        cls, schema: Schema | None, *, params: ParamSchema | None = None, max_rows: int
    ) -> RequestSchema:
        """Columns from an MLflow ColSpec schema; tensor or missing signatures accept any row."""
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return cls(None, params=params, max_rows=max_rows, tensor=_numeric_matrix(schema))
        columns = [
            Column(
                str(spec.name),
                spec.type if isinstance(spec.type, DataType) else None,
                spec.required,
            )
            for spec in schema.inputs
        ]
        return cls(columns, params=params, max_rows=max_rows)

    def to_frame(self, payload: Any) -> tuple[pd.DataFrame, dict[str, Any] | None]:
        """The request's rows as a typed DataFrame, and its params; raises SchemaMismatch."""
        frame, params, _ = self.parse(payload)
        return (frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)), params

    def parse(self, payload: Any
              ) -> tuple[pd.DataFrame | np.ndarray, dict[str, Any] | None, np.ndarray | None]:
        """:meth:`to_frame`, and the rows as the one numeric array the frame was built from
        when every column has the same numeric type (else None). For a 2-D tensor signature,
        rows of plain numbers come back as one array of its dtype, not a frame."""
        rows, params = self._split(payload)
        if self.columns is None and self.tensor is not None:
            matrix = self._tensor_matrix(rows)
            if matrix is not None:  # the array itself, as /invocations hands it the model
                return matrix, params, matrix
        if self.columns is None:
            first = rows[0]
            return (
                pd.DataFrame.from_records(rows) if isinstance(first, dict) else pd.DataFrame(rows)
            ), params, None
        names = self._index
        records = self._records(rows)
        if records is None:  # some optional column is absent from some row
            values: list[Sequence[Any]] = [[row.get(name) for row in rows] for name in names]
        else:
            matrix = self._uniform_matrix(records)
            if matrix is not None:
                return pd.DataFrame(matrix, columns=names), params, matrix
            values = list(zip(*records, strict=True))
        data = {c.name: c.to_array(v) for c, v in zip(self.columns, values, strict=True)}
        return pd.DataFrame(data, columns=names), params, None

    def _tensor_matrix(self, rows: list[Any]) -> np.ndarray | None:
        # rows of plain numbers of the tensor's width, else the general path below
        assert self.tensor is not None
        width = self.tensor.shape[1]
        if not all(type(row) is list and len(row) == width for row in rows):
            return None
        kinds = set(map(type, chain.from_iterable(rows)))
        if not kinds <= ({int, float} if self.tensor.type.kind == "f" else {int}):
            return None
        try:
            return np.array(rows, dtype=self.tensor.type)
        except OverflowError:
            return None

    def _split(self, payload: Any) -> tuple[list[Any], dict[str, Any] | None]:
        if not isinstance(payload, dict):
            raise SchemaMismatch(
                f"body: expected an object with 'inputs', got {json_type_name(payload)}",
                field="body",
            )
        for key in payload.keys() - REQUEST_FIELDS:
            raise SchemaMismatch(f"{key}: unknown field; expected 'inputs', 'params'", field=key)
        rows, params = payload.get("inputs"), payload.get("params")
        if not isinstance(rows, list):
            raise SchemaMismatch(
                f"inputs: expected an array of rows, got {json_type_name(rows)}", field="inputs"
            )
        if not rows:
            raise SchemaMismatch("inputs: expected at least one row, got none", field="inputs")
        if len(rows) > self.max_rows:
            raise PayloadTooLarge(
                f"inputs: {len(rows)} rows, at most {self.max_rows} accepted", field="inputs"
            )
        if params is not None and not isinstance(params, dict):
            raise SchemaMismatch(
                f"params: expected an object, got {json_type_name(params)}", field="params"
            )
        return rows, params

    def _records(self, rows: list[Any]) -> list[Sequence[Any]] | None:
        # rows as value sequences in column order, or None if only row.get can read them
        if isinstance(rows[0], dict):
            return self._records_from_objects(rows)
        self._check_arrays(rows)
        return rows

    def _uniform_matrix(self, records: list[Sequence[Any]]) -> np.ndarray | None:
        # one C-level type check and conversion when every column has the same numeric type
        if self._uniform_type is None:
            return None
        kinds = set(map(type, chain.from_iterable(records)))
        if not kinds <= ACCEPTED_TYPES[self._uniform_type]:
            return None  # the column-wise path names the offending cell
        try:
            matrix = array_of(records, self._uniform_type.to_numpy())
        except OverflowError:
            return None
        if overflowed(matrix):
            return None  # an overflow, or an inf sent: the column-wise path tells which
        return matrix

    def _records_from_objects(self, rows: list[Any]) -> list[Sequence[Any]] | None:
        is_complete = True
        for index, row in enumerate(rows):
            if type(row) is not dict:
                raise SchemaMismatch(
                    f"inputs[{index}]: expected an object like inputs[0], got "
                    f"{json_type_name(row)}",
                    field=f"inputs[{index}]",
                )
            if row.keys() != self._names:
                self._check_keys(index, row)
                is_complete = False
        if is_complete and self._row_getter is not None:
            return list(map(self._row_getter, rows))
        return None

    def _check_keys(self, index: int, row: dict[str, Any]) -> None:
        for name in sorted(row.keys() - self._names):
            field = f"inputs[{index}].{name}"
            raise SchemaMismatch(f"{field}: unknown column", field=field)
        for name in sorted(self._required - row.keys()):
            field = f"inputs[{index}].{name}"
            raise SchemaMismatch(f"{field}: missing required column", field=field)

    def _check_arrays(self, rows: list[Any]) -> None:
        assert self.columns is not None
        width = len(self.columns)
        for index, row in enumerate(rows):
            if type(row) is not list or len(row) != width:
                got = f"{len(row)} values" if type(row) is list else json_type_name(row)
                raise SchemaMismatch(
                    f"inputs[{index}]: expected {width} values in column order, got {got}",
                    field=f"inputs[{index}]",
                )
