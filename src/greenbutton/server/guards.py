"""Browser-borne attacks on a local server: DNS rebinding and cross-site writes.

Localhost is not a boundary: any web page can make the user's browser send requests to
127.0.0.1. Two checks stop that: the Host header must name this server (Starlette's
TrustedHostMiddleware, installed by ``guard``), and a state-changing request must not come
from another site (``Origin`` and ``Sec-Fetch-Site``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..serving.encoding import JSON, render_json

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allowed_hosts(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Host names a request may carry: loopback names when bound to loopback, else ``*``."""
    if bind_host in LOOPBACK_HOSTS:
        return [*LOOPBACK_HOSTS, *extra]
    return list(extra) or ["*"]


def guard(app: Starlette, bind_host: str, extra_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """Install the Host check and the cross-site write check on ``app``."""
    hosts = allowed_hosts(bind_host, extra_hosts)
    app.add_middleware(CrossSiteWriteGuard, hosts=hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)


class CrossSiteWriteGuard:
    """Refuses state-changing requests sent by a page of another site (403)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.strip("[]") for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason = self._refusal(headers)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = render_json({"error": {"type": "permission_denied", "message": reason,
                                      "field": "origin"}})
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, headers: Headers) -> str | None:
        if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return "cross-site state-changing requests are refused"
        origin = headers.get("origin")
        if origin is None:
            return None
        host = urlsplit(origin).hostname if origin != "null" else None
        if "*" in self.hosts or (host is not None and host in self.hosts):
            return None
        return f"requests from origin {origin!r} are refused"
