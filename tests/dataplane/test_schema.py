"""RequestSchema: /predict requests to typed DataFrames, and their JSON Schema."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.types.schema import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from greenbutton.dataplane.jsonschema import predict_components
from greenbutton.dataplane.schema import RequestSchema
from greenbutton.errors import PayloadTooLarge, SchemaMismatch

PIXELS = [f"pixel_{i}" for i in range(64)]


@pytest.fixture
def pixels() -> RequestSchema:
    """64 required double columns, as the digits model has."""
    schema = Schema([ColSpec(DataType.double, name) for name in PIXELS])
    return RequestSchema.from_mlflow(schema, max_rows=100)


@pytest.fixture
def mixed() -> RequestSchema:
    """Named columns of several types, one of them optional."""
    schema = Schema(
        [
            ColSpec(DataType.long, "age"),
            ColSpec(DataType.float, "height"),
            ColSpec(DataType.boolean, "member"),
            ColSpec(DataType.string, "city"),
            ColSpec(DataType.integer, "rooms", required=False),
        ]
    )
    params = ParamSchema([ParamSpec("threshold", DataType.double, 0.5)])
    return RequestSchema.from_mlflow(schema, params=params, max_rows=100)


def pixel_row(value: float = 1.0) -> dict[str, Any]:
    return dict.fromkeys(PIXELS, value)


def field_of(error: pytest.ExceptionInfo[SchemaMismatch]) -> str:
    assert error.value.field is not None
    return error.value.field


def test_to_frame_objects_builds_signature_dtypes(mixed: RequestSchema) -> None:
    row = {"age": 41, "height": 1.8, "member": True, "city": "Ghent", "rooms": 3}
    frame, _ = mixed.to_frame({"inputs": [row, {**row, "age": 7}]})
    assert list(frame.columns) == ["age", "height", "member", "city", "rooms"]
    assert frame["age"].dtype == np.int64
    assert frame["height"].dtype == np.float32
    assert frame["member"].dtype == np.bool_
    assert frame["rooms"].dtype == np.int32
    assert frame["age"].tolist() == [41, 7]


def test_to_frame_arrays_equal_objects(pixels: RequestSchema) -> None:
    values = [float(i) for i in range(64)]
    by_name, _ = pixels.to_frame({"inputs": [dict(zip(PIXELS, values, strict=True))]})
    by_position, _ = pixels.to_frame({"inputs": [values]})
    pd.testing.assert_frame_equal(by_name, by_position)


def test_parse_gives_the_array_a_uniform_frame_was_built_from(
        pixels: RequestSchema, mixed: RequestSchema) -> None:
    frame, _, values = pixels.parse({"inputs": [[float(i) for i in range(64)]] * 2})
    assert values is not None and values.shape == (2, 64)
    assert (frame.to_numpy() == values).all()
    row = {"age": 1, "height": 1.0, "member": False, "city": "x"}
    assert mixed.parse({"inputs": [row]})[2] is None  # columns of several types: no one array


def test_to_frame_ints_for_double_become_floats(pixels: RequestSchema) -> None:
    frame, _ = pixels.to_frame({"inputs": [[0] * 64]})
    assert (frame.dtypes == np.float64).all()


def test_to_frame_returns_params(mixed: RequestSchema) -> None:
    row = {"age": 1, "height": 1.0, "member": False, "city": "x"}
    _, params = mixed.to_frame({"inputs": [row], "params": {"threshold": 0.9}})
    assert params == {"threshold": 0.9}


def test_to_frame_optional_column_may_be_missing_or_null(mixed: RequestSchema) -> None:
    row = {"age": 1, "height": 1.0, "member": False, "city": "x"}
    frame, _ = mixed.to_frame({"inputs": [row, {**row, "rooms": None}, {**row, "rooms": 2}]})
    assert frame["rooms"].tolist() == [None, None, 2]


def test_to_frame_unknown_column_raises_naming_it(pixels: RequestSchema) -> None:
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": [pixel_row(), {**pixel_row(), "pixel_64": 0.0}]})
    assert field_of(error) == "inputs[1].pixel_64"


def test_to_frame_missing_column_raises_naming_it(pixels: RequestSchema) -> None:
    row = pixel_row()
    del row["pixel_7"]
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": [row]})
    assert field_of(error) == "inputs[0].pixel_7"


def test_to_frame_wrong_type_raises_naming_row_and_column(pixels: RequestSchema) -> None:
    rows = [pixel_row() for _ in range(4)]
    rows[3]["pixel_5"] = "white"
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": rows})
    assert field_of(error) == "inputs[3].pixel_5"
    assert str(error.value).startswith("inputs[3].pixel_5: expected number, got string")


@pytest.mark.parametrize("value", [True, None, [1.0], "1.0"])
def test_to_frame_non_number_in_number_column_raises(pixels: RequestSchema, value: Any) -> None:
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": [[*[0.0] * 63, value]]})
    assert field_of(error) == "inputs[0].pixel_63"


def test_to_frame_float_in_integer_column_raises(mixed: RequestSchema) -> None:
    row = {"age": 1.5, "height": 1.0, "member": False, "city": "x"}
    with pytest.raises(SchemaMismatch) as error:
        mixed.to_frame({"inputs": [row]})
    assert field_of(error) == "inputs[0].age"


def test_to_frame_integer_out_of_range_raises(mixed: RequestSchema) -> None:
    row = {"age": 1, "height": 1.0, "member": False, "city": "x", "rooms": 2**40}
    with pytest.raises(SchemaMismatch) as error:
        mixed.to_frame({"inputs": [row]})
    assert field_of(error) == "inputs[0].rooms"


def test_to_frame_number_past_float32_raises_not_made_inf(mixed: RequestSchema) -> None:
    row = {"age": 1, "height": 1e39, "member": False, "city": "x"}
    with pytest.raises(SchemaMismatch, match="out of range for float") as error:
        mixed.to_frame({"inputs": [row]})
    assert field_of(error) == "inputs[0].height"


def test_to_frame_wrong_row_length_raises(pixels: RequestSchema) -> None:
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": [[0.0] * 64, [0.0, 1.0, 2.0]]})
    assert field_of(error) == "inputs[1]"
    assert "expected 64 values" in str(error.value)


def test_to_frame_mixed_row_shapes_raise(pixels: RequestSchema) -> None:
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame({"inputs": [pixel_row(), [0.0] * 64]})
    assert field_of(error) == "inputs[1]"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": {"pixel_0": 1.0}}, "inputs"),
        ({}, "inputs"),
        ([[0.0] * 64], "body"),
        ({"inputs": [[0.0] * 64], "extra": 1}, "extra"),
        ({"inputs": [[0.0] * 64], "params": [1]}, "params"),
    ],
)
def test_to_frame_malformed_request_raises(pixels: RequestSchema, payload: Any, field: str) -> None:
    with pytest.raises(SchemaMismatch) as error:
        pixels.to_frame(payload)
    assert field_of(error) == field


def test_to_frame_too_many_rows_raises_payload_too_large(pixels: RequestSchema) -> None:
    with pytest.raises(PayloadTooLarge):
        pixels.to_frame({"inputs": [[0.0] * 64] * 101})


def test_to_frame_without_column_signature_accepts_objects() -> None:
    schema = RequestSchema.from_mlflow(None, max_rows=10)
    frame, _ = schema.to_frame({"inputs": [{"a": 1, "b": "x"}]})
    assert list(frame.columns) == ["a", "b"]


def test_predict_components_describe_every_column(pixels: RequestSchema) -> None:
    components = predict_components(pixels)
    row = components["PredictRowObject"]
    assert list(row["properties"]) == PIXELS
    assert row["required"] == PIXELS
    assert row["properties"]["pixel_0"] == {"type": "number", "format": "double"}
    assert components["PredictRowArray"]["minItems"] == 64
    assert components["PredictRequest"]["properties"]["inputs"]["maxItems"] == 100


def test_predict_components_mark_optional_columns_nullable(mixed: RequestSchema) -> None:
    row = predict_components(mixed)["PredictRowObject"]
    assert "rooms" not in row["required"]
    assert row["properties"]["rooms"]["type"] == ["integer", "null"]
    params = predict_components(mixed)["PredictRequest"]["properties"]["params"]
    assert params["properties"]["threshold"]["default"] == 0.5


def test_to_frame_decodes_binary_and_datetime_columns() -> None:
    schema = Schema([ColSpec(DataType.binary, "blob"), ColSpec(DataType.datetime, "at")])
    request = RequestSchema.from_mlflow(schema, max_rows=10)
    frame, _ = request.to_frame({"inputs": [["aGk=", "2024-05-01T12:00:00"]]})
    assert frame["blob"].tolist() == [b"hi"]
    assert frame["at"].tolist() == [pd.Timestamp("2024-05-01T12:00:00")]


@pytest.mark.parametrize(
    ("row", "field"), [(["%%", "2024-05-01"], "blob"), (["aGk=", "soon"], "at")]
)
def test_to_frame_bad_binary_or_datetime_raises(row: list[str], field: str) -> None:
    schema = Schema([ColSpec(DataType.binary, "blob"), ColSpec(DataType.datetime, "at")])
    with pytest.raises(SchemaMismatch) as error:
        RequestSchema.from_mlflow(schema, max_rows=10).to_frame({"inputs": [row]})
    assert field_of(error) == f"inputs[0].{field}"


def test_tensor_signature_rows_become_one_array_of_its_dtype() -> None:
    from mlflow.types.schema import TensorSpec

    schema = Schema([TensorSpec(np.dtype(np.float32), (-1, 3))])
    request = RequestSchema.from_mlflow(schema, max_rows=10)
    data, _, values = request.parse({"inputs": [[1, 2.5, 3], [4, 5, 6]]})
    assert isinstance(data, np.ndarray) and data.dtype == np.float32 and data.shape == (2, 3)
    assert values is data
    frame, _ = request.to_frame({"inputs": [[1, 2.5, 3]]})  # /explain takes a frame
    assert isinstance(frame, pd.DataFrame) and frame.shape == (1, 3)


@pytest.mark.parametrize(("datatype", "data"), [("INT32", [1, 2**31]), ("FP32", [1.0, -1e39])])
def test_v2_tensor_values_past_their_type_are_refused(datatype: str, data: list[Any]) -> None:
    from greenbutton.dataplane.tensors import decode_tensor

    tensor = {"name": "x", "datatype": datatype, "shape": [2], "data": data}
    with pytest.raises(SchemaMismatch, match="out of range") as error:
        decode_tensor(tensor, datatype, "inputs[0]")
    assert field_of(error) == "inputs[0]"
