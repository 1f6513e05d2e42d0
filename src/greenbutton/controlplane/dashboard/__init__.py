"""The dashboard: the green button in a browser, served by the control plane at ``/``.

Built and mounted by ``create_control_plane``::

    board = dashboard.build_dashboard(plane)
    routes=[*api.routes(), Mount("/endpoints", app=gateway), *board.routes]
    ...  # in the lifespan: asyncio.create_task(board.sample(stop))
    app.add_middleware(dashboard.CookieBearer)   # the sign-in cookie becomes a bearer token

Pages read the registry, MLflow, governance, the payload store and the controller
server-side; the buttons ``fetch`` the JSON API (``/api/v1``), so the API's checks (JSON only,
cross-site guard, permissions, audit) apply to the dashboard exactly as to any other client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...monitoring.payload_store import PayloadStore
from ..context import ControlPlane
from . import session
from .approvals import ApprovalsPage
from .audit import AuditPage
from .compare import ComparePage
from .deployment_page import DeploymentPage
from .live import LiveMetrics
from .pages import Dashboard
from .quality import QualityHistory
from .runs import MlflowLinks, RunReader
from .serving_logs import ServingLogs
from .session import CookieBearer
from .sources import Sources

__all__ = ["Board", "CookieBearer", "build_dashboard"]

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Board:
    """The dashboard's routes, and its background sampling of every deployment."""

    routes: list[BaseRoute]
    sample: Callable[[asyncio.Event], Coroutine[None, None, None]]
    """Run until the event is set: keeps traffic and quality history while no page is open."""


def build_dashboard(plane: ControlPlane) -> Board:
    """Every dashboard route (pages, live JSON, static assets) and the sampler."""
    settings, registry, controller = plane.settings, plane.registry, plane.controller
    uri = settings.monitoring.payload_store_uri
    quality = QualityHistory(lambda: PayloadStore(uri)) if settings.monitoring.is_enabled \
        else None
    live = LiveMetrics(plane.routes, controller, quality)
    sources = Sources(
        registry=registry, controller=controller, deployments=plane.deployments,
        runs=RunReader(registry.client),
        links=MlflowLinks(settings.mlflow), live=live, logs=ServingLogs(settings))
    pages, deployment = Dashboard(sources), DeploymentPage(sources)
    return Board(routes=[
        Route("/", pages.models, methods=["GET"], name="dashboard"),
        Route("/models/{name}", pages.model, methods=["GET"]),
        Route("/models/{name}/live", pages.model_live, methods=["GET"]),
        Route("/models/{name}/compare", ComparePage(sources).show, methods=["GET"]),
        Route("/deployments", pages.deployments, methods=["GET"]),
        Route("/deployments/{name}", deployment.show, methods=["GET"]),
        Route("/deployments/{name}/live", deployment.live, methods=["GET"]),
        Route("/deployments/{name}/logs", deployment.logs, methods=["GET"]),
        Route("/approvals", ApprovalsPage(sources).show, methods=["GET"]),
        Route("/audit", AuditPage().show, methods=["GET"]),
        Route("/signin", session.signin_page, methods=["GET"]),
        Route("/signin", session.signin, methods=["POST"]),
        Route("/signout", session.signout, methods=["POST"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/assets", app=StaticFiles(directory=STATIC), name="assets"),
    ], sample=live.run)


async def favicon(request: Request) -> Response:
    """Browsers ask for ``/favicon.ico`` whatever the page links."""
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon",
                        headers={"cache-control": "public, max-age=86400"})
