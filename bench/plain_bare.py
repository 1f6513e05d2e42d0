"""The floor for a plain MLflow sklearn model: a bare Starlette app that parses each MLflow
input format straight into what the estimator takes (a NumPy array, or a DataFrame for a
model fitted on named columns) and calls the estimator's ``predict``: no MLflow schema
enforcement, no monitoring, no limits, no auth. Any server of the same model in Python
(uvicorn + httptools + uvloop, same worker count) answers at most about this fast.

Run by bench/plain_mlflow_bench.py as ``uvicorn bench.plain_bare:app`` with MODEL_URI (a
``models:/`` URI) and MLFLOW_TRACKING_URI set.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow.sklearn
import numpy as np
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL = mlflow.sklearn.load_model(os.environ["MODEL_URI"])
NAMED = hasattr(MODEL, "feature_names_in_")


def model_input(payload: dict[str, Any]) -> Any:
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        return pd.DataFrame(split["data"], columns=split.get("columns"))
    if "dataframe_records" in payload:
        return pd.DataFrame(payload["dataframe_records"])
    given = payload.get("inputs", payload.get("instances"))
    if isinstance(given, dict) or (isinstance(given, list) and given
                                   and isinstance(given[0], dict)):
        return pd.DataFrame(given)
    return np.asarray(given, dtype=np.float64)


async def invocations(request: Request) -> Response:
    data = model_input(orjson.loads(await request.body()))
    if NAMED and not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data, columns=MODEL.feature_names_in_)
    predictions = MODEL.predict(data)
    return Response(orjson.dumps({"predictions": predictions.tolist()}),
                    media_type="application/json")


async def ping(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]),
                        Route("/ping", ping)])
