"""MLflow's scoring parser and greenbutton's agree on the model's input, or both refuse it.

Hypothesis draws a signature (named columns, one unnamed tensor, or none), rows of JSON
values around it (integers, floats, booleans, nulls, NaN, strings, out-of-range integers)
and one MLflow input format. MLflow's side is its scoring server's parser followed by the
schema enforcement ``PyFuncModel.predict`` runs; greenbutton's is the ``/invocations``
parser (fast path first), the null check and the conformers before ``_predict_fn``. Two
deliberate differences, refused by the oracle too: a null where the signature requires a
value (MLflow hands it on as NaN), and a number that does not fit its column's type, such as
2**31 for an ``integer`` column or an int32 tensor (MLflow refuses it under
``instances``/``inputs`` but wraps it around to -2**31 under the DataFrame formats, and turns
1e39 for a ``float`` into inf).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc import scoring_server
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from greenbutton.dataplane.fastparse import ScoringParser
from greenbutton.dataplane.fastpath import FastConformer, TensorConformer
from greenbutton.dataplane.nulls import NullCheck
from greenbutton.dataplane.protocols.mlflow import parse_scoring_json
from greenbutton.errors import InvalidInput

COLUMN_TYPES = ["boolean", "integer", "long", "float", "double"]
TENSOR_TYPES = [np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int64)]
FORMATS = ["split", "split_unnamed", "split_shuffled", "records", "inputs_columns",
           "inputs_rows", "instances_columns", "instances_records", "instances_rows"]
REFUSED = object()
CELLS = st.one_of(
    st.integers(-(2**31), 2**31),
    # JSON integers past 64 bits are read as floats (orjson, like most JSON readers), where
    # MLflow's json.loads keeps them exact: the one input greenbutton reads differently
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(-1e6, 1e6).map(lambda x: round(x, 2)),
    st.booleans(),
    st.none(),
    st.just(float("nan")),
    st.sampled_from(["1.5", "x"]),
)
COLUMN_CELLS = {  # mostly the column's own kind, sometimes anything
    "boolean": st.booleans(),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.one_of(st.floats(-1e30, 1e30), st.integers(-(2**40), 2**40)),
    "double": st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                        st.integers(-(2**62), 2**62)),
}


@st.composite
def signatures(draw: st.DrawFn) -> tuple[Schema | None, list[str], list[str]]:
    """A schema, its column names and, per column, the type that draws its cells."""
    kind = draw(st.sampled_from(["columns", "tensor", "none"]))
    width = draw(st.integers(1, 4))
    names = [f"c{i}" for i in range(width)]
    if kind == "columns":
        types = [draw(st.sampled_from(COLUMN_TYPES)) for _ in names]
        has_optional = draw(st.integers(0, 4)) == 0
        specs = [ColSpec(t, n, required=not (has_optional and draw(st.booleans())))
                 for t, n in zip(types, names, strict=True)]
        return Schema(specs), names, types  # type: ignore[arg-type]
    dtype = draw(st.sampled_from(TENSOR_TYPES))
    cell_type = {"f": "double", "i": "long"}[dtype.kind]
    if kind == "tensor":
        return Schema([TensorSpec(dtype, (-1, width))]), names, [cell_type] * width
    return None, names, [cell_type] * width


@st.composite
def payloads(draw: st.DrawFn) -> tuple[Schema | None, dict[str, Any]]:
    """A signature and one scoring request drawn around it."""
    schema, names, types = draw(signatures())
    rows_n = draw(st.integers(1, 3))
    is_clean = draw(st.integers(0, 4)) < 3  # the values the signature asks for, most often
    cells = [COLUMN_CELLS[t] if is_clean else st.one_of(COLUMN_CELLS[t], CELLS) for t in types]
    rows = [[draw(c) for c in cells] for _ in range(rows_n)]
    if draw(st.integers(0, 3)) == 0:
        names = [*names, "extra"]
        rows = [[*row, draw(CELLS)] for row in rows]
    shape = draw(st.sampled_from(FORMATS))
    columns = {n: [row[i] for row in rows] for i, n in enumerate(names)}
    records = [dict(zip(names, row, strict=True)) for row in rows]
    if shape == "split":
        body: Any = {"dataframe_split": {"columns": names, "data": rows}}
        if draw(st.booleans()):
            body["dataframe_split"]["index"] = list(range(10, 10 + rows_n))
    elif shape == "split_unnamed":
        body = {"dataframe_split": {"data": rows}}
    elif shape == "split_shuffled":
        order = draw(st.permutations(range(len(names))))
        body = {"dataframe_split": {"columns": [names[i] for i in order],
                                    "data": [[row[i] for i in order] for row in rows]}}
    elif shape == "records":
        body = {"dataframe_records": records}
    elif shape == "inputs_columns":
        body = {"inputs": columns}
    elif shape == "inputs_rows":
        body = {"inputs": rows}
    elif shape == "instances_columns":
        body = {"instances": columns}
    elif shape == "instances_records":
        body = {"instances": records}
    else:
        body = {"instances": rows}
    return schema, body


def mlflow_input(schema: Schema | None, body: dict[str, Any]) -> Any:
    """What MLflow's scoring server hands ``_predict_fn``, or REFUSED."""
    if _has_unfit_number(schema, body):
        return REFUSED
    try:
        decoded = json.loads(json.dumps(body))  # as the server reads it
        data = scoring_server.infer_and_parse_data(decoded, schema)  # type: ignore[arg-type]
        enforced = _enforce_schema(data, schema) if schema is not None else data
    except (MlflowException, ValueError, TypeError, KeyError, OverflowError):
        return REFUSED
    return REFUSED if _has_refused_null(enforced, schema) else enforced


LIMITS = {"integer": (-(2**31), 2**31), "long": (-(2**63), 2**63)}
"""Integer types: the half-open range of the values they hold."""
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _has_unfit_number(schema: Schema | None, body: dict[str, Any]) -> bool:
    # written from the rule, from the JSON cells of each named signature column (every cell
    # for a tensor, whose dtype every column is cast to)
    if schema is None:
        return False
    if schema.is_tensor_spec():
        kind = {"int64": "long", "float32": "float"}.get(schema.inputs[0].type.name, "")
        return any(_unfit(value, kind) for value in _all_cells(body))
    cells = _named_cells(body)
    return any(_unfit(value, getattr(spec.type, "name", ""))
               for spec in schema.inputs for value in cells.get(str(spec.name), []))


def _unfit(value: Any, kind: str) -> bool:
    if type(value) not in (int, float) or value != value:
        return False
    if kind in LIMITS:
        return not LIMITS[kind][0] <= value < LIMITS[kind][1]
    return kind == "float" and abs(value) != float("inf") and abs(value) > FLOAT32_MAX


def _all_cells(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [c for v in value.values() for c in _all_cells(v)]
    if isinstance(value, list):
        return [c for v in value for c in _all_cells(v)]
    return [value]


def _named_cells(body: dict[str, Any]) -> dict[str, list[Any]]:
    """Column name → its JSON values, for the formats that name columns."""
    (input_format, value), = body.items()
    found: dict[str, list[Any]] = {}
    if input_format == "dataframe_split" and "columns" in value:
        for row in value["data"]:
            for name, cell in zip(value["columns"], row, strict=False):
                found.setdefault(str(name), []).append(cell)
    elif isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        for row in value:
            for name, cell in row.items():
                found.setdefault(str(name), []).append(cell)
    elif isinstance(value, dict) and input_format in ("inputs", "instances"):
        found = {str(k): list(v) if isinstance(v, list) else [v] for k, v in value.items()}
    return found


def _has_refused_null(data: Any, schema: Schema | None) -> bool:
    # written from the rule, not from greenbutton's NullCheck
    if schema is None:
        return False
    if isinstance(data, pd.DataFrame):
        required = set(schema.required_input_names()) if schema.has_input_names() else None
        return any(bool(data[c].isna().any()) for c in data.columns
                   if required is None or c in required)
    array = np.asarray(data)
    return array.dtype.kind == "f" and bool(np.isnan(array).any())


def greenbutton_input(schema: Schema | None, body: dict[str, Any]) -> Any:
    """What greenbutton hands ``_predict_fn`` for the same request, or REFUSED."""
    encoded = json.dumps(body).encode()
    try:
        data, _, values = parse_scoring_json(encoded, schema,
                                             parser=ScoringParser.from_schema(schema))
        checker = NullCheck.from_schema(schema)
        if checker is not None:
            checker.check(data, values)
        conformed = _conformed(schema, data)
        if conformed is not None:
            return conformed
        return _enforce_schema(data, schema) if schema is not None else data
    except (InvalidInput, MlflowException, ValueError, TypeError, KeyError, OverflowError):
        return REFUSED


def _conformed(schema: Schema | None, data: Any) -> Any:
    # the fast checks ServedModel.predict makes before calling _predict_fn itself
    columns, tensor = FastConformer.from_schema(schema), TensorConformer.from_schema(schema)
    if columns is not None and isinstance(data, pd.DataFrame):
        return columns.conform(data)
    return tensor.conform(data) if tensor is not None else None


def assert_same_input(expected: Any, actual: Any) -> None:
    """Equal values, dtypes, columns and index; or both refused."""
    if expected is REFUSED or actual is REFUSED:
        assert expected is actual, f"mlflow: {expected!r}\ngreenbutton: {actual!r}"
    elif isinstance(expected, pd.DataFrame):
        assert isinstance(actual, pd.DataFrame)
        pd.testing.assert_frame_equal(actual, expected, check_exact=True,
                                      check_column_type=False)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys()
        for name in expected:
            assert_same_input(np.asarray(expected[name]), np.asarray(actual[name]))
    else:
        expected, actual = np.asarray(expected), np.asarray(actual)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        pd.testing.assert_series_equal(pd.Series(actual.ravel()), pd.Series(expected.ravel()),
                                       check_exact=True)


@pytest.fixture(autouse=True)
def _quiet_mlflow() -> Any:
    # MLflow logs a warning for every extra column; hundreds of examples drown the report
    logger = logging.getLogger("mlflow.models.utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_greenbutton_and_mlflow_parse_to_the_same_model_input(
    drawn: tuple[Schema | None, dict[str, Any]],
) -> None:
    schema, body = drawn
    note(f"schema={schema!r} body={body!r}")
    with warnings.catch_warnings():  # pandas' cast warnings: production does not raise them
        warnings.simplefilter("ignore")
        expected = mlflow_input(schema, body)
        actual = greenbutton_input(schema, body)
    assert_same_input(expected, actual)


COLUMNS = Schema([ColSpec("double", "a"), ColSpec("long", "b")])
TENSOR = Schema([TensorSpec(np.dtype(np.float64), (-1, 2))])
ROWS = [[1.5, 2], [3.0, 4]]


@pytest.mark.parametrize(("schema", "body"), [
    (COLUMNS, {"dataframe_split": {"columns": ["a", "b"], "data": ROWS}}),
    (COLUMNS, {"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1.5]], "index": [7]}}),
    (COLUMNS, {"dataframe_records": [{"a": 1.5, "b": 2}, {"b": 4, "a": 3.0}]}),
    (COLUMNS, {"inputs": {"a": [1.5, 3.0], "b": [2, 4]}}),
    (COLUMNS, {"instances": [{"a": 1.5, "b": 2}]}),
    (TENSOR, {"inputs": ROWS}),
    (TENSOR, {"instances": ROWS}),
    (TENSOR, {"dataframe_split": {"data": ROWS}}),
    (TENSOR, {"dataframe_split": {"columns": ["x", "y"], "data": ROWS}}),
    (TENSOR, {"dataframe_records": [{"x": 1.5, "y": 2}]}),
])
def test_plain_numbers_take_the_fast_path_in_every_format(
    schema: Schema, body: dict[str, Any]
) -> None:
    parser = ScoringParser.from_schema(schema)
    assert parser is not None
    (input_format, value), = body.items()
    built = parser.parse(input_format, copy.deepcopy(value))
    assert built is not None
    assert_same_input(mlflow_input(schema, body), _conformed(schema, built[0]))


@pytest.mark.parametrize("body", [
    {"dataframe_records": [{"c0": 1, "c1": 0.5}, {"c0": 2**31, "c1": 0.5}]},  # fast path
    {"dataframe_split": {"columns": ["c1", "c0"], "data": [[0.5, 2.0**31]]}},
    {"dataframe_records": [{"c0": 2**31, "c1": 0.5, "note": "text"}]},  # MLflow's parse
    {"instances": [{"c0": 2**31, "c1": 0.5}]},
    {"inputs": {"c0": [2**31], "c1": [0.5]}},
])
def test_an_integer_past_its_columns_type_is_refused_naming_the_column(
        body: dict[str, Any]) -> None:
    """2**31 for an int32 column: never handed on as -2**31 (MLflow's DataFrame formats do)."""
    schema = Schema([ColSpec("integer", "c0"), ColSpec("double", "c1")])
    with pytest.raises(InvalidInput) as refused:
        greenbutton_input_or_raise(schema, body)
    assert refused.value.field in ("c0", *body)
    assert "2147483648" in refused.value.message


def test_a_float_past_float32_is_refused_not_made_inf() -> None:
    schema = Schema([ColSpec("float", "c0")])
    for body in ({"dataframe_split": {"columns": ["c0"], "data": [[1e39]]}},
                 {"inputs": {"c0": [1.0, -1e39]}}):
        with pytest.raises(InvalidInput, match="does not fit") as refused:
            greenbutton_input_or_raise(schema, body)
        assert refused.value.field == "c0"


def greenbutton_input_or_raise(schema: Schema, body: dict[str, Any]) -> Any:
    data, _, _ = parse_scoring_json(json.dumps(body).encode(), schema,
                                    parser=ScoringParser.from_schema(schema))
    return _conformed(schema, data)


@pytest.mark.parametrize(("dtype", "body"), [
    (np.int64, {"dataframe_split": {"data": [[1e19, 1]]}}),  # MLflow: -2**63
    (np.int64, {"dataframe_records": [{"a": 2**63, "b": 1}]}),
    (np.float32, {"inputs": [[1e39, 1.0]]}),  # MLflow: inf
    (np.float32, {"dataframe_split": {"data": [[1.0, -1e39]]}}),
])
def test_a_tensor_value_past_its_dtype_is_refused(dtype: Any, body: dict[str, Any]) -> None:
    schema = Schema([TensorSpec(np.dtype(dtype), (-1, 2))])
    with pytest.raises(InvalidInput, match="does not fit"):
        greenbutton_input_or_raise(schema, body)
