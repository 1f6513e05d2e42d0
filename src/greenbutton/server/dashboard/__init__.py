"""The dashboard: the green button in a browser, served by the control plane at ``/``.

Mounted by ``create_control_plane``::

    routes=[*api.routes(), Mount("/endpoints", app=gateway),
            *dashboard.dashboard_routes(settings, registry, controller, routes)]
    ...
    app.add_middleware(dashboard.CookieBearer)   # the sign-in cookie becomes a bearer token

Pages read the registry, MLflow and the controller server-side; the buttons POST the JSON API
(``/api/v1``) with ``fetch``, so the API's checks (JSON only, cross-site guard, permissions)
apply to the dashboard exactly as to any other client.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...config import Settings
from ...controller.loop import Controller
from ...controller.routes import RouteTable
from ...registry import Registry
from . import session
from .audit import AuditPage
from .live import LiveMetrics
from .pages import Dashboard
from .runs import RunReader
from .session import CookieBearer

__all__ = ["CookieBearer", "dashboard_routes"]


def dashboard_routes(settings: Settings, registry: Registry, controller: Controller,
                     routes: RouteTable) -> list[BaseRoute]:
    """Every dashboard route: pages, sign-in, live JSON of deployments, static assets."""
    runs = RunReader(MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri))
    pages = Dashboard(registry, controller, runs, LiveMetrics(routes, controller))
    static = StaticFiles(directory=Path(__file__).parent / "static")
    return [
        Route("/", pages.models, methods=["GET"], name="dashboard"),
        Route("/models/{name}", pages.model, methods=["GET"]),
        Route("/deployments", pages.deployments, methods=["GET"]),
        Route("/deployments/{name}", pages.deployment, methods=["GET"]),
        Route("/deployments/{name}/live", pages.live, methods=["GET"]),
        Route("/audit", AuditPage().show, methods=["GET"]),
        Route("/signin", session.signin_page, methods=["GET"]),
        Route("/signin", session.signin, methods=["POST"]),
        Route("/signout", session.signout, methods=["POST"]),
        Mount("/assets", app=static, name="assets"),
    ]
