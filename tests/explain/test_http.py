"""POST /explain through the serving app: shape, validation, limits, metrics, own explain()."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx
import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette

from greenbutton.config import ExplainSettings
from greenbutton.dataplane.loading import ServedModel

from .conftest import explainer_of

AppFactory = Callable[[ServedModel, ExplainSettings], Starlette]

pytest.importorskip("shap", reason="explanations need the greenbutton[explain] extra")


def rows_of(X: pd.DataFrame, n: int) -> list[dict[str, float]]:
    return X.head(n).to_dict(orient="records")  # type: ignore[return-value]


async def test_explain_returns_attributions_per_row_and_class(
    pipeline_client: httpx.AsyncClient, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = digits_xy
    response = await pipeline_client.post("/explain", json={"inputs": rows_of(X, 2)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explainer"] == "LinearExplainer" and body["output_space"] == "margin"
    assert body["outputs"] == [str(d) for d in range(10)]
    assert body["image_shape"] == [8, 8]
    assert body["model"] == {"name": "digits", "version": "3"}
    assert response.headers["X-Model-Version"] == "3"
    assert body["predictions"] == y.head(2).tolist()
    first = body["explanations"][0]
    assert first["prediction"] == int(y.iloc[0])
    explained = first["outputs"][str(y.iloc[0])]
    assert list(explained["attributions"]) == list(X.columns)
    total = explained["base_value"] + sum(explained["attributions"].values())
    assert abs(total - explained["value"]) < 1e-6


async def test_explain_bad_cell_is_422_naming_the_field(
    pipeline_client: httpx.AsyncClient, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    rows = rows_of(X, 2)
    rows[1]["pixel_5"] = "bright"  # type: ignore[assignment]
    response = await pipeline_client.post("/explain", json={"inputs": rows})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "inputs[1].pixel_5"


async def test_explain_too_many_rows_is_413(
    pipeline_client: httpx.AsyncClient, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    response = await pipeline_client.post("/explain", json={"inputs": rows_of(X, 21)})
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "inputs"


async def test_explain_is_counted_in_metrics(
    pipeline_client: httpx.AsyncClient, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    assert (await pipeline_client.post("/explain", json={"inputs": rows_of(X, 1)})).is_success
    text = (await pipeline_client.get("/metrics")).text
    assert 'greenbutton_explain_latency_seconds_count{explainer="LinearExplainer"' in text
    assert 'endpoint="/explain"' in text


def gate_of(model: ServedModel) -> threading.Event:
    gate = threading.Event()
    model.pyfunc.unwrap_python_model().gate = gate
    return gate


async def test_own_explain_takes_precedence(
    make_app: AppFactory, own_model: ServedModel, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    app = make_app(own_model, ExplainSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/explain", json={"inputs": rows_of(X, 1)})
    explainer_of(app).close()
    body = response.json()
    assert body["explainer"] == "model.explain"
    brightest = X.columns[int(np.argmax(X.to_numpy()[0]))]
    assert body["explanations"] == [{"brightest": brightest}]


async def test_explain_over_its_concurrency_limit_is_503(
    make_app: AppFactory, own_model: ServedModel, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    gate = gate_of(own_model)
    app = make_app(own_model, ExplainSettings(max_concurrency=1, timeout_s=10))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        first = asyncio.create_task(client.post("/explain", json={"inputs": rows_of(X, 1)}))
        for _ in range(200):  # until the first explanation holds the only slot
            if explainer_of(app).is_full:
                break
            await asyncio.sleep(0.01)
        second = await client.post("/explain", json={"inputs": rows_of(X, 1)})
        predict = await client.post("/predict", json={"inputs": rows_of(X, 1)})
        gate.set()
        assert (await first).status_code == 200
        metrics = (await client.get("/metrics")).text
    explainer_of(app).close()
    assert second.status_code == 503 and second.headers["Retry-After"]
    assert second.json()["error"]["type"] == "overloaded"
    assert predict.status_code == 200  # /predict has its own limits
    assert 'greenbutton_explain_rejected_total{model="digits",reason="overloaded"' in metrics


async def test_explain_over_its_timeout_is_504(
    make_app: AppFactory, own_model: ServedModel, digits_xy: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, _ = digits_xy
    gate = gate_of(own_model)
    app = make_app(own_model, ExplainSettings(max_concurrency=1, timeout_s=0.05))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/explain", json={"inputs": rows_of(X, 1)})
        is_still_held = explainer_of(app).is_full  # the thread is still running
        watched = explainer_of(app).calls.snapshot()  # and the watchdog can see it
        gate.set()
        for _ in range(200):  # until the finished thread gives its slot back
            if not explainer_of(app).is_full:
                break
            await asyncio.sleep(0.01)
        metrics = (await client.get("/metrics")).text
    explainer_of(app).close()
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "request_timeout"
    assert is_still_held and not explainer_of(app).is_full
    assert len(watched) == 1 and explainer_of(app).calls.snapshot() == []
    assert 'reason="timeout"' in metrics


async def test_openapi_shows_own_explain_output_schema(
    make_app: AppFactory, own_model: ServedModel
) -> None:
    app = make_app(own_model, ExplainSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        document = (await client.get("/openapi.json")).json()
    assert "/explain" in document["paths"]
    explanations = document["components"]["schemas"]["ExplainResponse"]["properties"][
        "explanations"]
    assert explanations["items"]["properties"] == {"brightest": {"type": "string"}}
