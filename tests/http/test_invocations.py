"""POST /invocations: MLflow's scoring protocol, answered exactly as MLflow's server answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel, scoring_server

from greenbutton.config import Settings
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.hooks import PredictionRecord

FORMATS: dict[str, Callable[[pd.DataFrame], dict[str, Any]]] = {
    "dataframe_split": lambda frame: {"dataframe_split": frame.to_dict(orient="split")},
    "dataframe_records": lambda frame: {"dataframe_records": frame.to_dict(orient="records")},
    "instances": lambda frame: {"instances": frame.to_dict(orient="records")},
    "inputs": lambda frame: {"inputs": frame.to_dict(orient="list")},
}


@pytest.fixture(scope="session")
def reference(digits_store: Settings) -> Iterator[PyFuncModel]:
    """The digits model as ``mlflow.pyfunc.load_model`` loads it, independently of serving."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(digits_store.mlflow.tracking_uri)
    mlflow.set_registry_uri(digits_store.mlflow.registry_uri)
    try:
        yield mlflow.pyfunc.load_model("models:/digits/1")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def mlflow_answer(reference: PyFuncModel, body: bytes | str, content_type: str) -> Any:
    """What MLflow's own scoring server answers for ``body``."""
    schema = reference.metadata.get_input_schema()
    answer = scoring_server.invocations(body, content_type, reference, schema)
    assert answer.status == 200
    return json.loads(answer.response)


@pytest.mark.parametrize("input_format", sorted(FORMATS))
async def test_invocations_json_format_matches_mlflow(
    client: httpx.AsyncClient,
    reference: PyFuncModel,
    digits_frame: pd.DataFrame,
    input_format: str,
) -> None:
    frame = digits_frame[:25]
    body = json.dumps(FORMATS[input_format](frame))
    response = await client.post(
        "/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == mlflow_answer(reference, body, "application/json")
    assert response.json()["predictions"] == reference.predict(frame).tolist()


async def test_invocations_csv_matches_mlflow(
    client: httpx.AsyncClient, reference: PyFuncModel, digits_frame: pd.DataFrame
) -> None:
    body = digits_frame[:25].to_csv(index=False)
    response = await client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 200
    assert response.json() == mlflow_answer(reference, body, "text/csv")
    assert response.json()["predictions"] == reference.predict(digits_frame[:25]).tolist()


async def test_invocations_answers_with_request_id_and_model_version(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    body = {"dataframe_records": digits_frame[:1].to_dict(orient="records")}
    response = await client.post("/invocations", json=body, headers={"x-request-id": "req-7"})
    assert response.headers["x-request-id"] == "req-7"
    assert response.headers["x-model-version"] == "1"
    assert list(response.json()) == ["predictions"]


async def test_invocations_two_formats_rejected_with_field(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    records = digits_frame[:1].to_dict(orient="records")
    response = await client.post(
        "/invocations", json={"dataframe_records": records, "instances": records}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"


async def test_invocations_missing_column_rejected_as_schema_mismatch(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    records = digits_frame[:1].drop(columns=["pixel_9"]).to_dict(orient="records")
    response = await client.post("/invocations", json={"dataframe_records": records})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "schema_mismatch"


async def test_invocations_malformed_csv_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/invocations", content=b"pixel_0\n\xff\xfe", headers={"content-type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "body"


async def test_invocations_hands_the_parsed_rows_to_the_sinks(
    client: httpx.AsyncClient, dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    records: list[PredictionRecord] = []

    class Recording:
        def submit(self, record: PredictionRecord) -> None:
            records.append(record)

        async def aclose(self) -> None:
            pass

    dataplane.add_hooks(sinks=[Recording()])
    frame = digits_frame[:3]
    for input_format in ("dataframe_split", "inputs", "dataframe_records"):
        response = await client.post("/invocations", json=FORMATS[input_format](frame))
        assert response.status_code == 200
    split, columns, by_records = (r.values for r in records)
    # built from one array: the sinks log it as it is, with no conversion from the frame
    assert split is not None and columns is not None and by_records is not None
    for values in (split, columns, by_records):
        np.testing.assert_array_equal(values, frame.to_numpy())


NULL_BODIES: dict[str, Callable[[pd.DataFrame], Any]] = {
    **FORMATS,
    "nan_literal": lambda frame: json.dumps(FORMATS["dataframe_split"](frame)),  # NaN, not null
    "csv": lambda frame: frame.to_csv(index=False),
}


@pytest.mark.parametrize("shape", sorted(NULL_BODIES))
async def test_invocations_null_in_required_column_rejected_naming_it(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame, shape: str
) -> None:
    frame = digits_frame[:2].astype(object)
    frame.loc[1, "pixel_3"] = float("nan") if shape in ("nan_literal", "csv") else None
    body = NULL_BODIES[shape](frame)
    if isinstance(body, dict):
        response = await client.post("/invocations", json=body)
    else:
        media_type = "text/csv" if shape == "csv" else "application/json"
        response = await client.post("/invocations", content=body,
                                     headers={"content-type": media_type})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "pixel_3"


async def test_predict_null_in_required_column_rejected_naming_it(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    rows = digits_frame[:1].to_dict(orient="records")
    rows[0]["pixel_3"] = None
    response = await client.post("/predict", json={"inputs": rows})
    assert response.status_code == 422
    assert response.json()["error"]["field"].endswith(".pixel_3")


async def test_invocations_enforcement_error_names_the_problem_not_the_data(
    client: httpx.AsyncClient, digits_frame: pd.DataFrame
) -> None:
    # rows without names: MLflow's parser accepts them, its enforcement misses every column
    response = await client.post("/invocations", json={"inputs": digits_frame[:50].values.tolist()})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "missing inputs" in message
    assert len(message) < 600 and "rows x" not in message
