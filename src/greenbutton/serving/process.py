"""A serving process: build the app for one model URI and run it under uvicorn.

The model loads in the background once the ASGI lifespan starts, so ``/health/live``
answers at once and ``/health/ready`` turns 200 only after loading and warm-up. If loading
fails, the server stops and :func:`run` raises :class:`~greenbutton.errors.ModelNotReady`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from ..config import Settings
from ..errors import ModelNotReady
from ..monitoring.metrics import Metrics
from .app import create_app
from .dataplane import DataPlane
from .loading import ServedModel, load_served_model


def build_serving_app(
    settings: Settings,
    model_uri: str,
    *,
    on_load_failure: Callable[[BaseException], None] | None = None,
) -> Starlette:
    """The serving app for ``model_uri``; its lifespan loads and warms up the model."""
    dataplane = DataPlane(settings.serving, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(
            prefix="greenbutton-model-", ignore_cleanup_errors=True
        ) as workdir:
            loader = partial(load_served_model, model_uri, settings.mlflow, Path(workdir))
            loading = asyncio.create_task(_load(dataplane, loader, on_load_failure))
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading

    return create_app(settings, dataplane, lifespan=lifespan)


async def _load(
    dataplane: DataPlane,
    loader: Callable[[], ServedModel],
    on_failure: Callable[[BaseException], None] | None,
) -> None:
    await dataplane.load(loader)
    if dataplane.load_error is not None and on_failure is not None:
        on_failure(dataplane.load_error)


def run(
    settings: Settings,
    model_uri: str,
    *,
    host: str | None = None,
    port: int | None = None,
    fd: int | None = None,
) -> None:
    """Serve ``model_uri`` until SIGTERM/SIGINT, on ``host:port`` or an inherited socket ``fd``."""
    server: uvicorn.Server | None = None

    def stop(error: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = build_serving_app(settings, model_uri, on_load_failure=stop)
    config = uvicorn.Config(
        app,
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.serving.shutdown_timeout_s),
    )
    server = uvicorn.Server(config)
    # socket(fileno=...) detects the family itself (uvicorn's own fd= assumes AF_UNIX)
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    server.run(sockets=sockets)
    dataplane: DataPlane = app.state.dataplane
    if dataplane.load_error is not None:
        raise ModelNotReady(f"{model_uri}: {dataplane.status_message()}") from dataplane.load_error
