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

from .. import __version__
from ..controller.leader import lead
from ..controller.routing.shared import SharedRoutes
from ..dataplane.guards import guard
from ..dataplane.responses import (
    handle_greenbutton_error,
    handle_http_exception,
    internal_error_response,
)
from ..errors import GreenbuttonError
from ..governance.approvals import Approvals
from . import api, dashboard
from .context import ControlPlane
from .gateway import create_gateway
from .openapi import openapi_route

log = logging.getLogger(__name__)
_ROUTES_WAIT_S = 10.0
"""Longest the server waits for the first reconcile pass (or the leader's table) to load the
routes before it listens."""


def create_control_plane(plane: ControlPlane) -> Starlette:
    """The control-plane ASGI app over ``plane`` (built by ``wiring.assemble_control_plane``);
    its lifespan runs the reconcile loop while this replica is the leader
    (``controller/leader.py``), then closes the target (stopping what it runs) — except when
    other replicas may take over: they adopt what runs."""
    settings, controller, routes, target = (plane.settings, plane.controller, plane.routes,
                                            plane.target)
    elector, leadership = plane.elector, plane.leadership
    gateway = create_gateway(routes, settings)
    board = dashboard.build_dashboard(plane)
    # replicas on one home (local target): followers' gateways take the leader's routes
    shared = SharedRoutes(routes, settings.home / "run" / "routes.json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        async with gateway.router.lifespan_context(gateway):
            loop_task = asyncio.create_task(
                lead(elector, controller.run, stop, leadership=leadership,
                     poll_interval_s=settings.controller.leader_poll_interval_s,
                     on_lost=plane.on_leadership_lost,
                     on_tick=(lambda is_leader: shared.tick(is_leader=is_leader))
                     if elector.is_shared else None), name="leader-election")
            sampling = asyncio.create_task(board.sample(stop), name="dashboard-sampling")
            sweeping = asyncio.create_task(
                _fail_interrupted_gates(plane.approvals, settings.auth.gate_lease_s / 2, stop),
                name="interrupted-gates")
            # listen once routes are loaded (the gateway answers 503 until then, never 404)
            await routes.wait_loaded(_ROUTES_WAIT_S)
            try:
                yield
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping
                if not (elector.is_shared or leadership.is_lost):
                    await target.close()

    app = Starlette(
        routes=[*api.routes(), openapi_route(api.routes, __version__),
                Mount("/endpoints", app=gateway), *board.routes],
        exception_handlers={
            GreenbuttonError: handle_greenbutton_error,
            HTTPException: handle_http_exception,
            Exception: unexpected_response,
        },
        lifespan=lifespan,
    )
    app.state.control_plane = plane  # read through context.of(request), nowhere else
    guard(app, settings.server.host)
    app.add_middleware(dashboard.CookieBearer)  # dashboard sign-in cookie → bearer token
    return app


async def _fail_interrupted_gates(approvals: Approvals, interval_s: float,
                                  stop: asyncio.Event) -> None:
    """Every ``interval_s`` until ``stop``: fail the proposals whose gates lost their control
    plane (this replica's previous life included), so none stays ``gating`` for ever."""
    while not stop.is_set():
        try:
            for request in await asyncio.to_thread(approvals.fail_interrupted):
                log.warning("request #%d (%s version %d): %s", request.id, request.model,
                            request.version, request.decision_reason)
        except Exception:  # the store is unreachable for now: try again next time
            log.warning("could not look for interrupted gates", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def unexpected_response(request: Request, error: Exception) -> Response:
    """Anything else: 500 with a generic message; the details go to the log."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return internal_error_response(getattr(request.state, "request_id", None) or "")
