"""``create_control_plane``: the API, the stable endpoint URLs and the controller, in one app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from ..config import Settings
from ..controller.loop import Controller
from ..controller.routes import RouteTable
from ..controller.targets import Target
from ..errors import GreenbuttonError
from ..governance.access import Access
from ..governance.approvals import Approvals
from ..registry import Registry
from ..serving.guards import guard
from ..serving.responses import (
    handle_greenbutton_error,
    handle_http_exception,
    internal_error_response,
)
from . import api, dashboard
from .gateway import create_gateway

log = logging.getLogger(__name__)


def create_control_plane(
    settings: Settings,
    registry: Registry,
    controller: Controller,
    routes: RouteTable,
    target: Target,
    *,
    access: Access | None = None,
    approvals: Approvals | None = None,
) -> Starlette:
    """The control-plane ASGI app; its lifespan runs the reconcile loop, then closes the
    target (stopping what it runs)."""
    gateway = create_gateway(routes, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        async with gateway.router.lifespan_context(gateway):
            loop_task = asyncio.create_task(controller.run(stop), name="reconcile-loop")
            try:
                yield
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
                await target.close()

    app = Starlette(
        routes=[*api.routes(), Mount("/endpoints", app=gateway),
                *dashboard.dashboard_routes(settings, registry, controller, routes)],
        exception_handlers={
            GreenbuttonError: handle_greenbutton_error,
            HTTPException: handle_http_exception,
            Exception: unexpected_response,
        },
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.controller = controller
    app.state.access = access  # None: no auth (tests of the bare API); see server/auth.py
    app.state.approvals = approvals
    guard(app, settings.server.host)
    app.add_middleware(dashboard.CookieBearer)  # dashboard sign-in cookie → bearer token
    return app


async def unexpected_response(request: Request, error: Exception) -> Response:
    """Anything else: 500 with a generic message; the details go to the log."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return internal_error_response(getattr(request.state, "request_id", None) or "")
