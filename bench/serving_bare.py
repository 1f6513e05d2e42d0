"""The practical limit: a bare Starlette app that parses the same JSON and calls the same
model ``predict`` (the user's PythonModel.predict, without MLflow's per-call schema checks).

Run by bench/serving_bench.py as ``uvicorn bench.serving_bare:app`` with MODEL_PATH set.
"""

from __future__ import annotations

import os

import mlflow.pyfunc
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MODEL = mlflow.pyfunc.load_model(os.environ["MODEL_PATH"]).unwrap_python_model()


async def invocations(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])
    else:
        frame = pd.DataFrame(payload["inputs"])
    predictions = MODEL.predict(None, frame)  # the model's own predict, no schema checks
    return Response(orjson.dumps({"predictions": predictions.tolist()}),
                    media_type="application/json")


async def ping(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]),
                        Route("/ping", ping)])
