"""Browser-borne attacks on a local server: DNS rebinding, cross-site writes, form posts.

Localhost is not a boundary: any web page can make the user's browser send requests to
127.0.0.1. Three checks stop that: the Host header must name this server
(:class:`HostCheck`, installed by ``guard``), a state-changing request must not come
from another site (``Origin`` and ``Sec-Fetch-Site``), and a state-changing request with a
body must say it is JSON (or another listed type), which a plain HTML form cannot
(:class:`JsonOnlyWrites`). Used by both ASGI apps, the control plane and serving.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .encoding import JSON, render_json

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_hosts(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Host names a request may carry: loopback names plus ``extra`` (a pod's addresses and
    Service names, say); bound beyond loopback with no ``extra`` given, any (``*``)."""
    if bind_host in LOOPBACK_HOSTS or extra:
        return [*LOOPBACK_HOSTS, *extra]
    return ["*"]


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port: ``[fd00::1]:8080`` -> ``fd00::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # a bare IPv6 address (no port can be told apart)
        return header
    return header.partition(":")[0]


def guard(app: Starlette, bind_host: str, extra_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """Install the Host check and the cross-site write check on ``app``."""
    hosts = allowed_hosts(bind_host, extra_hosts)
    app.add_middleware(CrossSiteWriteGuard, hosts=hosts)
    app.add_middleware(HostCheck, hosts=hosts)


class HostCheck:
    """Refuses (400) a request whose ``Host`` names none of ``hosts`` (DNS rebinding).

    Like Starlette's TrustedHostMiddleware (``*`` allows any name, ``*.example.com`` its
    subdomains), but IPv6 literals are understood: ``Host: [fd00::17]:8080`` names
    ``fd00::17``, as kubelet's probes of a pod on an IPv6 or dual-stack cluster do.
    """

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        names = {host_name(h) if h.startswith("[") else h.lower() for h in hosts}
        self.is_any = "*" in names
        self.names = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def is_allowed(self, header: str) -> bool:
        """Whether a request with this ``Host`` header may go on."""
        name = host_name(header)
        return self.is_any or name in self.names or (
            bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_allowed(
                Headers(scope=scope).get("host", "")):
            await self.app(scope, receive, send)
            return
        body = b"Invalid host header"
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class CrossSiteWriteGuard:
    """Refuses state-changing requests sent by a page of another site (403)."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.strip("[]").lower() for h in hosts)

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


class JsonOnlyWrites:
    """Refuses (415) state-changing requests whose body is not JSON, before reading them.

    ``extra`` maps a path to further media types it accepts (``/invocations``: CSV). Pickle
    and octet-stream bodies are never accepted: pickle is not a transport.
    """

    def __init__(self, app: ASGIApp, extra: dict[str, frozenset[str]] | None = None) -> None:
        self.app = app
        self.extra = extra or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        accepted = self.extra.get(scope["path"], frozenset()) | {JSON}
        if media_type in accepted or (not media_type and not has_body):
            await self.app(scope, receive, send)
            return
        shown = media_type or "none"
        state = scope.setdefault("state", {})
        state["error_type"] = "unsupported_media_type"
        request_id = state.get("request_id")
        body = render_json({"error": {"type": "unsupported_media_type", "field": "content-type",
                                      "message": f"content type {shown!r} not accepted; "
                                                 f"send {' or '.join(sorted(accepted))}",
                                      "request_id": request_id}})
        await send({"type": "http.response.start", "status": 415,
                    "headers": [(b"content-type", JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
