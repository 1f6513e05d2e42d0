"""Per-request context: request id, headers, concurrency limit, metrics, the last-resort 500."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Overloaded
from .core import DataPlane, request_id_from
from .responses import error_response, internal_error_response

LIMIT_OF_ERROR = {"request_timeout": "timeout", "overloaded": "concurrency"}
"""Which limit an error type means (``payload_too_large`` is split by field below)."""
BODY_FIELDS = frozenset({"body", "content-length"})

logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Pure ASGI middleware around every serving route.

    It gives each request an id (``X-Request-ID``), adds ``X-Request-ID`` and
    ``X-Model-Version`` to every response, refuses state-changing requests beyond
    ``max_concurrency`` in flight with 503 before reading them, counts requests to the
    ``instrumented`` route paths in the data plane's metrics, and turns an unexpected
    exception into a logged 500.
    """

    def __init__(self, app: ASGIApp, *, dataplane: DataPlane, instrumented: frozenset[str]) -> None:
        self.app = app
        self.dataplane = dataplane
        self.instrumented = instrumented
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope).get("x-request-id"))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        has_started = False

        async def send_with_context(message: Message) -> None:
            nonlocal status, has_started
            if message["type"] == "http.response.start":
                status, has_started = message["status"], True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if self.dataplane.version is not None:
                    headers["X-Model-Version"] = self.dataplane.version
            await send(message)

        is_counted = scope["method"] == "POST"
        if is_counted and self.in_flight >= self.dataplane.settings.max_concurrency:
            await self._refuse(scope, receive, send_with_context, request_id)
            return
        if is_counted:
            self.in_flight += 1
            self.dataplane.metrics.in_flight.set(self.in_flight)
        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            logger.exception("unexpected error answering request %s", request_id)
            state["error_type"] = "internal_error"
            if has_started:
                raise
            await internal_error_response(request_id)(scope, receive, send_with_context)
        finally:
            if is_counted:
                self.in_flight -= 1
                self.dataplane.metrics.in_flight.set(self.in_flight)
            self._observe(scope, status, time.perf_counter() - started)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        error = Overloaded(
            f"more than {self.dataplane.settings.max_concurrency} requests in flight; retry later"
        )
        self.dataplane.metrics.observe_limit("concurrency")
        response = error_response(
            503, error.type, error.message, field=None, request_id=request_id
        )
        await response(scope, receive, send)

    def _observe(self, scope: Scope, status: int, latency_s: float) -> None:
        state = scope["state"]
        limit = LIMIT_OF_ERROR.get(state.get("error_type", ""))
        if state.get("error_type") == "payload_too_large":
            limit = "body_size" if state.get("error_field") in BODY_FIELDS else "rows"
        if limit is not None:
            self.dataplane.metrics.observe_limit(limit)
        # refused before routing (guards), the route is unknown: fall back to the plain path
        path = getattr(scope.get("route"), "path", None) or scope["path"]
        if path not in self.instrumented:
            return  # health checks, scrapes and unknown paths stay out of the request metrics
        self.dataplane.metrics.observe_request(
            model=self.dataplane.name,
            version=self.dataplane.version,
            endpoint=path,
            status=status,
            latency_s=latency_s,
            error_type=scope["state"].get("error_type"),
        )
