"""Error bodies: unknown routes, unexpected model failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics


class FailingModel(mlflow.pyfunc.PythonModel):
    """Fails on rows whose pixel_0 is 99."""

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Zeros, or a crash."""
        if (model_input["pixel_0"] == 99).any():
            raise RuntimeError("secret internal detail")
        return np.zeros(len(model_input), dtype=np.int64)


async def test_unknown_route_returns_404_error_body(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert "x-request-id" in response.headers


async def test_model_crash_returns_generic_500(
    settings: Settings, save_local_model: Callable[[mlflow.pyfunc.PythonModel], ServedModel]
) -> None:
    dataplane = DataPlane(settings.serving, Metrics(), save_local_model(FailingModel()))
    transport = httpx.ASGITransport(app=create_app(settings, dataplane))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/predict", json={"inputs": [[99.0] + [0.0] * 63]})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "internal_error"
    assert "secret" not in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
