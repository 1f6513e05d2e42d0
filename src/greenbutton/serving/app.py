"""The serving ASGI app: every route of a serving process, listed in :func:`create_app`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Lifespan
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from ..config import Settings
from ..errors import GreenbuttonError, ModelNotReady
from .dataplane import DataPlane
from .middleware import RequestContextMiddleware
from .openapi import docs, openapi_json
from .protocols.mlflow import invocations
from .protocols.native import predict
from .responses import handle_greenbutton_error, handle_http_exception, json_response

PREDICTION_PATHS = frozenset({"/predict", "/invocations"})
"""Routes counted in the request metrics (health checks and scrapes are not)."""


def create_app(
    settings: Settings, dataplane: DataPlane, *, lifespan: Lifespan[Starlette] | None = None
) -> Starlette:
    """The ASGI app of one serving process around ``dataplane``."""
    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static"),
    ]
    middleware = [
        Middleware(RequestContextMiddleware, dataplane=dataplane, instrumented=PREDICTION_PATHS)
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            GreenbuttonError: handle_greenbutton_error,
            HTTPException: handle_http_exception,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.dataplane = dataplane
    return app


async def live(request: Request) -> Response:
    """``GET /health/live``: 200 while the process can answer at all."""
    return json_response({"status": "live"})


async def ready(request: Request) -> Response:
    """``GET /health/ready``: 200 once the model is loaded and warmed up, else 503."""
    dataplane: DataPlane = request.app.state.dataplane
    if not dataplane.is_ready:
        raise ModelNotReady(dataplane.status_message())
    model = {"name": dataplane.name, "version": dataplane.version}
    return json_response({"status": "ready", "model": model})


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text exposition of this process's registry."""
    registry = request.app.state.dataplane.metrics
    return Response(registry.render(), media_type=registry.content_type)
