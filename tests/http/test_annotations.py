"""Row annotators in responses: /predict top-level key, v2 parameters, /invocations unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics


class Flags:
    name = "outliers"

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        return [{"is_outlier": False, "score": 0.5}] * len(frame)


async def test_annotations_rendered_per_protocol(
    settings: Settings, served_digits: ServedModel, digits_frame: pd.DataFrame
) -> None:
    plane = DataPlane(settings.serving, Metrics(), served_digits, annotators=[Flags()])
    await plane.warm_up()
    transport = httpx.ASGITransport(app=create_app(settings, plane))
    rows = digits_frame[:2]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        native = (await client.post("/predict", json={"inputs": rows.to_numpy().tolist()})).json()
        split = {"dataframe_split": rows.to_dict(orient="split")}
        mlflow_shape = (await client.post("/invocations", json=split)).json()
        tensor = {"name": "x", "shape": [2, 64], "datatype": "FP64",
                  "data": rows.to_numpy().reshape(-1).tolist()}
        v2 = (await client.post("/v2/models/digits/infer", json={"inputs": [tensor]})).json()
    assert native["outliers"] == [{"is_outlier": False, "score": 0.5}] * 2
    assert set(mlflow_shape) == {"predictions"}
    assert v2["parameters"]["outliers"] == native["outliers"]
