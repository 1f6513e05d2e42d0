"""Open Inference Protocol v2 over the digits model: health, metadata, infer, dtypes."""

from __future__ import annotations

import httpx
import pandas as pd


async def test_v2_health_and_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    assert (await client.get("/v2/models/digits/versions/1/ready")).status_code == 200
    metadata = (await client.get("/v2/models/digits")).json()
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"][0] == {"name": "pixel_0", "datatype": "FP64", "shape": [-1]}
    assert metadata["outputs"][0]["datatype"] == "INT64"


async def test_v2_infer_one_matrix_tensor(client: httpx.AsyncClient,
                                          digits_frame: pd.DataFrame) -> None:
    rows = digits_frame[:2].to_numpy()
    body = {"id": "abc", "inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP64",
                                     "data": rows.reshape(-1).tolist()}]}
    answer = (await client.post("/v2/models/digits/infer", json=body)).json()
    assert answer["id"] == "abc" and answer["model_version"] == "1"
    assert answer["outputs"][0]["datatype"] == "INT64"
    assert answer["outputs"][0]["shape"] == [2]
    assert answer["parameters"]["request_id"]


async def test_v2_infer_column_tensors_int_widens(client: httpx.AsyncClient) -> None:
    inputs = [{"name": f"pixel_{i}", "shape": [1], "datatype": "INT32", "data": [i % 16]}
              for i in range(64)]
    response = await client.post("/v2/models/digits/versions/1/infer", json={"inputs": inputs})
    assert response.status_code == 200


async def test_v2_infer_bool_for_double_refused(client: httpx.AsyncClient) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BOOL", "data": [True] * 64}]}
    response = await client.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 422


async def test_v2_wrong_model_or_version_not_found(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/models/other")).status_code == 404
    assert (await client.get("/v2/models/digits/versions/9/ready")).status_code == 404


async def test_infer_with_a_tensor_name_that_is_not_a_string_is_422(
        client: httpx.AsyncClient) -> None:
    tensor = {"name": {"not": "a name"}, "shape": [1], "datatype": "FP64", "data": [1.0]}
    answer = await client.post("/v2/models/digits/infer", json={"inputs": [tensor]})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "inputs.0.name"
