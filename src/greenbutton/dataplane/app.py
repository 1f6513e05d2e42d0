"""The serving ASGI app: every route of a serving process, listed in :func:`create_app`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Lifespan
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from ..config import Settings
from ..errors import GreenbuttonError, ModelNotReady
from .context import ServingContext, serving
from .core import DataPlane
from .encoding import CSV
from .guards import CrossSiteWriteGuard, HostCheck, JsonOnlyWrites, allowed_hosts
from .middleware import RequestContextMiddleware
from .mirror import MirrorSample
from .openapi import docs, openapi_json
from .protocols import v2
from .protocols.explain import explain
from .protocols.mlflow import invocations
from .protocols.native import predict
from .responses import handle_greenbutton_error, handle_http_exception, json_response

PREDICTION_PATHS = frozenset({"/predict", "/invocations", "/explain", *v2.INFER_PATHS})
"""Routes counted in the request metrics (health checks and scrapes are not)."""


if TYPE_CHECKING:
    from ..explain.service import ExplainService
    from .auth import EndpointAuthority


def create_app(
    settings: Settings,
    dataplane: DataPlane,
    *,
    lifespan: Lifespan[Starlette] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    authority: EndpointAuthority | None = None,
    explainer: ExplainService | None = None,
    render_metrics: Callable[[], bytes] | None = None,
) -> Starlette:
    """The ASGI app of one serving process around ``dataplane``.

    ``extra_routes`` (e.g. ``/feedback``, ``/monitoring``) come after the built-in ones;
    every handler finds the process's parts with ``context.serving(request)``. ``authority``
    decides tokens when endpoint auth is required (default: ask the control plane).
    """
    routes: list[BaseRoute] = [
        Route("/predict", predict, methods=["POST"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/explain", explain, methods=["POST"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static"),
        *v2.routes(),
        *extra_routes,
    ]
    serving = settings.serving
    hosts = allowed_hosts(serving.host, serving.extra_hosts)
    middleware = [  # outermost first: Host and Origin checks before anything else runs
        Middleware(HostCheck, hosts=hosts),
        Middleware(CrossSiteWriteGuard, hosts=hosts),
        Middleware(RequestContextMiddleware, dataplane=dataplane, instrumented=PREDICTION_PATHS),
        Middleware(JsonOnlyWrites, extra={"/invocations": frozenset({CSV})}),
    ]
    if settings.is_endpoint_auth_required:  # bearer token with 'invoke' (dataplane/auth.py)
        from .auth import endpoint_auth

        middleware.insert(3, endpoint_auth(settings, authority))
    if serving.mirror_percent is not None:  # a shadow's pods on Kubernetes (dataplane/mirror.py)
        middleware.insert(2, Middleware(
            MirrorSample, percent=serving.mirror_percent, predictions=PREDICTION_PATHS,
            metrics=dataplane.metrics,
            labels=lambda: (dataplane.name, dataplane.version or "")))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            GreenbuttonError: handle_greenbutton_error,
            HTTPException: handle_http_exception,
        },
        lifespan=lifespan,
    )
    app.state.serving = ServingContext(settings, dataplane, explainer, render_metrics)
    return app


async def live(request: Request) -> Response:
    """``GET /health/live``: 200 while the process can answer at all."""
    return json_response({"status": "live"})


async def ready(request: Request) -> Response:
    """``GET /health/ready``: 200 once the model is loaded and warmed up, else 503."""
    dataplane = serving(request).dataplane
    if not dataplane.is_ready or dataplane.is_draining:
        raise ModelNotReady(dataplane.status_message())
    model = {"name": dataplane.name, "version": dataplane.version}
    return json_response({"status": "ready", "model": model})


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text exposition (summed over workers if there are several)."""
    context = serving(request)
    registry = context.dataplane.metrics
    render = context.render_metrics or registry.render
    return Response(render(), media_type=registry.content_type)
