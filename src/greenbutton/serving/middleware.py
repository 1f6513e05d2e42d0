"""Per-request context: request id, identifying headers, request metrics, the last-resort 500."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .dataplane import DataPlane, request_id_from
from .responses import internal_error_response

logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Pure ASGI middleware around every serving route.

    It gives each request an id (``X-Request-ID``), adds ``X-Request-ID`` and
    ``X-Model-Version`` to every response, counts requests to the ``instrumented`` route
    paths in the data plane's metrics, and turns an unexpected exception into a logged 500.
    """

    def __init__(self, app: ASGIApp, *, dataplane: DataPlane, instrumented: frozenset[str]) -> None:
        self.app = app
        self.dataplane = dataplane
        self.instrumented = instrumented

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

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            logger.exception("unexpected error answering request %s", request_id)
            state["error_type"] = "internal_error"
            if has_started:
                raise
            await internal_error_response(request_id)(scope, receive, send_with_context)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, latency_s: float) -> None:
        path = getattr(scope.get("route"), "path", None)
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
