"""build_serving_app and run: background loading, and a real uvicorn on an inherited socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient
from starlette.applications import Starlette

from greenbutton.config import Settings
from greenbutton.errors import ModelNotFound
from greenbutton.serving.process import build_serving_app

SERVE_FROM_FD = """
import sys
from greenbutton.config import Settings
from greenbutton.serving.process import run
run(Settings(), sys.argv[1], fd=int(sys.argv[2]))
"""


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/health/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def started(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            yield client


async def test_build_serving_app_loads_alias_in_background(
    digits_store: Settings, digits_frame: pd.DataFrame
) -> None:
    uri = digits_store.mlflow.tracking_uri
    MlflowClient(uri, uri).set_registered_model_alias("digits", "production", "1")
    app = build_serving_app(digits_store, "models:/digits@production")
    async with started(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await wait_ready(client)).status_code == 200
        rows = digits_frame[:3].to_numpy().tolist()
        response = await client.post("/predict", json={"inputs": rows})
        assert response.json()["model"] == {"name": "digits", "version": "1"}
        assert response.headers["x-model-version"] == "1"


async def test_build_serving_app_load_failure_reported(digits_store: Settings) -> None:
    failures: list[BaseException] = []
    app = build_serving_app(digits_store, "models:/digits@missing", on_load_failure=failures.append)
    async with started(app) as client:
        response = await wait_ready(client, timeout_s=10)
        assert response.status_code == 503
    assert isinstance(failures[0], ModelNotFound)


@pytest.mark.slow
async def test_run_serves_on_inherited_socket_until_sigterm(
    digits_store: Settings, digits_frame: pd.DataFrame
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = {**os.environ, **digits_store.environ()}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_FROM_FD, "models:/digits/1", str(listener.fileno())],
        pass_fds=[listener.fileno()],
        env=env,
    )
    listener.close()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await wait_ready(client, timeout_s=120)).status_code == 200
            rows = digits_frame[:2].to_numpy().tolist()
            response = await client.post("/predict", json={"inputs": rows})
            assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
