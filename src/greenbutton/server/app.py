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
from ..registry import Registry
from ..serving.responses import (
    handle_greenbutton_error,
    handle_http_exception,
    internal_error_response,
)
from . import api
from .gateway import create_gateway
from .guards import guard

log = logging.getLogger(__name__)


def create_control_plane(
    settings: Settings,
    registry: Registry,
    controller: Controller,
    routes: RouteTable,
    target: Target,
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
        routes=[*api.routes(), Mount("/endpoints", app=gateway)],
        exception_handlers={
            GreenbuttonError: handle_greenbutton_error,
            HTTPException: handle_http_exception,
            Exception: unexpected_response,
        },
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.controller = controller
    guard(app, settings.server.host)
    return app


async def unexpected_response(request: Request, error: Exception) -> Response:
    """Anything else: 500 with a generic message; the details go to the log."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return internal_error_response(getattr(request.state, "request_id", None) or "")
