"""POST /predict: rows as objects or arrays, typed by the signature; errors name the field."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest

from greenbutton.dataplane.core import DataPlane

PIXELS = [f"pixel_{i}" for i in range(64)]


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_predict_rows_as_objects_returns_predictions(
    client: httpx.AsyncClient, dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    frame = digits_frame[:10]
    response = await client.post("/predict", json={"inputs": frame.to_dict(orient="records")})
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == dataplane.model.pyfunc.predict(frame).tolist()
    assert body["model"] == {"name": "digits", "version": "1"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-model-version"] == "1"


async def test_predict_rows_as_arrays_equal_rows_as_objects(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    frame = digits_frame[:10]
    as_objects = await client.post("/predict", json={"inputs": frame.to_dict(orient="records")})
    as_arrays = await client.post("/predict", json={"inputs": frame.to_numpy().tolist()})
    assert as_arrays.status_code == 200
    assert as_arrays.json()["predictions"] == as_objects.json()["predictions"]


async def test_predict_echoes_sane_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict", json={"inputs": [[0.0] * 64]}, headers={"x-request-id": "trace-99"}
    )
    assert response.json()["request_id"] == "trace-99"
    assert response.headers["x-request-id"] == "trace-99"


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({**dict.fromkeys(PIXELS, 0.0), "pixel_64": 1.0}, "inputs[0].pixel_64"),
        ({**dict.fromkeys(PIXELS, 0.0), "pixel_5": "white"}, "inputs[0].pixel_5"),
        (dict.fromkeys(PIXELS[:-1], 0.0), "inputs[0].pixel_63"),
        ([0.0, 1.0, 2.0], "inputs[0]"),
    ],
    ids=["unknown-column", "wrong-type", "missing-column", "wrong-row-length"],
)
async def test_predict_bad_row_rejected_naming_field(
    client: httpx.AsyncClient, row: Any, field: str
) -> None:
    response = await client.post("/predict", json={"inputs": [row]})
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "schema_mismatch"
    assert error["field"] == field
    assert field in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


async def test_predict_no_rows_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"inputs": []})
    assert response.status_code == 422
    assert error_of(response)["field"] == "inputs"


async def test_predict_too_many_rows_rejected_with_413(
    client: httpx.AsyncClient, dataplane: DataPlane
) -> None:
    rows = [[0.0] * 64] * (dataplane.settings.max_rows + 1)
    response = await client.post("/predict", json={"inputs": rows})
    assert response.status_code == 413
    assert error_of(response)["field"] == "inputs"


async def test_predict_csv_rejected_with_415(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    body = digits_frame[:1].to_csv(index=False)
    response = await client.post("/predict", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 415
    assert error_of(response)["field"] == "content-type"
