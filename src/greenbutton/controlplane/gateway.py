"""Stable URLs for deployments: a reverse proxy that picks the backend per request.

Mounted at ``/endpoints`` in the control plane, ``/endpoints/digits/predict`` goes to whichever
process the ``RouteTable`` routes ``digits`` to at that moment, so a promotion takes effect on the
next request and a client's keep-alive connection is never pinned to an old process.

Request bodies are buffered (bounded by ``serving.max_body_bytes``) so a request can be retried
when nothing reached the old backend; responses are streamed through. The variant is chosen by
``routing.choose_variant`` keyed on the deployment's sticky header (else the request id); a
shadow backend gets a copy of ``mirror_percent`` % of requests in the background, its answer
discarded (its own /metrics count it, labelled by version). Every response carries
``X-Greenbutton-Version``.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..controller.reconcile import check_name
from ..controller.routing.split import is_mirrored
from ..controller.routing.table import Lease, RouteTable
from ..dataplane.encoding import read_body
from ..dataplane.responses import error_response
from ..errors import (
    DeploymentNotFound,
    GreenbuttonError,
    InvalidInput,
    NotReady,
    Overloaded,
    RequestTimeout,
    http_status_for,
)
from ..ids import new_request_id

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length",
})
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_CONNECT_TIMEOUT_S = 5.0
_MAX_SHADOW_IN_FLIGHT = 64
"""Mirrored requests beyond this many in flight are dropped: a shadow never slows the caller."""

log = logging.getLogger(__name__)


class _UpstreamResponse(Response):
    """Streams an upstream response, then closes it and releases the backend lease."""

    def __init__(
        self, upstream: httpx.Response, lease: Lease, headers: list[tuple[str, str]]
    ) -> None:
        self.upstream, self.lease = upstream, lease
        self.status_code = upstream.status_code
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in self.upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.upstream.aclose()
            self.lease.release()


def create_gateway(
    routes: RouteTable, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Starlette:
    """The reverse proxy app; when mounted, enter its ``router.lifespan_context`` from the
    parent's lifespan (Starlette does not run a mounted app's lifespan)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        read_s = settings.serving.request_timeout_s + _CONNECT_TIMEOUT_S
        max_connections = settings.controller.gateway_max_connections
        async with httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(read_s, connect=_CONNECT_TIMEOUT_S, pool=_CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=max_connections),
            trust_env=False,  # loopback backends: never through an environment proxy
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            follow_redirects=False,
        ) as client:
            app.state.client = client
            app.state.shadow_tasks = set()
            try:
                yield
            finally:
                tasks: set[asyncio.Task[None]] = app.state.shadow_tasks
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def proxy(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or new_request_id()
        name = request.path_params["name"]
        try:
            path = _checked_path(name, request.path_params.get("path", ""))
            body = await read_body(request, settings.serving.max_body_bytes, may_be_empty=True)
            return await _forward(request, routes, name, path, body, request_id)
        except GreenbuttonError as error:
            return _error_response(error, request_id, settings)

    return Starlette(
        routes=[
            Route("/{name}", proxy, methods=_METHODS),
            Route("/{name}/{path:path}", proxy, methods=_METHODS),
        ],
        lifespan=lifespan,
    )


async def _forward(
    request: Request, routes: RouteTable, name: str, path: str, body: bytes, request_id: str
) -> Response:
    client: httpx.AsyncClient | None = getattr(request.app.state, "client", None)
    if client is None:
        raise RuntimeError("gateway lifespan not entered (a mounted app's lifespan is not run)")
    headers = _forward_headers(request, name, request_id)
    key = _routing_key(request, routes.sticky_header(name), path, body, request_id)
    lease = routes.lease(name, key=key)
    _mirror(request, client, routes, name, key, lease.backend.version, path, headers, body)
    for is_retry in (False, True):
        url = httpx.URL(lease.backend.url).copy_with(raw_path=_raw_path(path, request))
        # built directly, not with client.build_request: no shared cookies between callers
        upstream_request = httpx.Request(request.method, url, headers=headers, content=body)
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.ConnectError as error:
            # nothing reached the backend; retry once if the route has moved on meanwhile
            lease.release()
            if is_retry:
                raise NotReady(f"deployment {name!r} is not reachable") from error
            lease = routes.lease(name, avoid_url=lease.backend.url)
            continue
        except httpx.PoolTimeout as error:
            lease.release()
            raise Overloaded("gateway connection limit reached") from error
        except httpx.TimeoutException as error:
            lease.release()
            raise RequestTimeout(f"deployment {name!r} did not answer in time") from error
        except (httpx.RemoteProtocolError, httpx.ReadError) as error:
            # the backend (e.g. a worker that died) dropped the request after receiving it:
            # not retried, it may have had effects; the caller may retry after Retry-After
            lease.release()
            raise NotReady(f"deployment {name!r} dropped the request; retry") from error
        except BaseException:
            lease.release()
            raise
        return _UpstreamResponse(upstream, lease, _response_headers(upstream, name, lease))
    raise AssertionError("unreachable")  # the loop either returns or raises


def _routing_key(
    request: Request, sticky: str | None, path: str, body: bytes, request_id: str
) -> str:
    """The sticky header's value; for ``/feedback``, the id of the prediction it is about
    (so it reaches the variant that answered while the weights stay); else the request id."""
    if sticky and request.headers.get(sticky):
        return request.headers[sticky]
    if path == "feedback" and request.method == "POST":
        try:
            about = json.loads(body).get("request_id")
        except (ValueError, AttributeError):
            about = None
        if isinstance(about, str) and about:
            return about
    return request_id


def _mirror(
    request: Request, client: httpx.AsyncClient, routes: RouteTable, name: str, key: str,
    answering: int, path: str, headers: list[tuple[str, str]], body: bytes,
) -> None:
    """Copy the request to each shadow whose share holds ``key``; answers are discarded."""
    tasks: set[asyncio.Task[None]] = request.app.state.shadow_tasks
    for shadow in routes.shadows(name):
        if shadow.version == answering or not is_mirrored(shadow.mirror_percent, key):
            continue
        if len(tasks) >= _MAX_SHADOW_IN_FLIGHT:
            log.warning("shadow copy to %s v%d dropped: too many in flight", name, shadow.version)
            continue
        url = httpx.URL(shadow.url).copy_with(raw_path=_raw_path(path, request))
        copy = httpx.Request(request.method, url, content=body,
                             headers=[*headers, ("x-greenbutton-shadow", "1")])
        task = asyncio.create_task(_send_discarding(client, copy))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _send_discarding(client: httpx.AsyncClient, request: httpx.Request) -> None:
    try:
        response = await client.send(request)
        await response.aclose()
    except httpx.HTTPError as error:
        log.info("shadow request to %s failed: %s", request.url, error)


def _checked_path(name: str, path: str) -> str:
    """The decoded path after the deployment name, refused if it could escape or smuggle."""
    try:
        check_name(name)
    except ValueError as error:
        raise DeploymentNotFound(f"no deployment named {name!r}") from error
    segments = path.split("/")
    is_bad = (
        unquote(path) != path  # still encoded after the server decoded it once
        or any(segment in (".", "..") for segment in segments)
        or any(segment == "" for segment in segments[:-1])
        or any(ch in path for ch in "\\#?")
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path)
    )
    if is_bad:
        raise InvalidInput("path not allowed", field="path")
    return path


def _raw_path(path: str, request: Request) -> bytes:
    raw = "/" + quote(path, safe="/:@!$&'()*+,;=-._~")
    query = request.url.query
    return (raw + "?" + query if query else raw).encode("ascii")


def _forward_headers(request: Request, name: str, request_id: str) -> list[tuple[str, str]]:
    """The caller's headers minus hop-by-hop ones; ours replace any ``x-forwarded-*`` sent."""
    dropped = _HOP_BY_HOP | _connection_tokens(request.headers.getlist("connection"))
    headers = [
        (k, v) for k, v in request.headers.items()
        if k not in dropped and not k.startswith("x-forwarded-") and k != "x-request-id"
    ]
    return headers + [
        ("x-forwarded-for", request.client.host if request.client else ""),
        ("x-forwarded-host", request.headers.get("host", "")),
        ("x-forwarded-proto", request.url.scheme),
        ("x-forwarded-prefix", f"{request.scope.get('root_path', '')}/{name}"),
        ("x-request-id", request_id),
    ]


def _response_headers(upstream: httpx.Response, name: str, lease: Lease) -> list[tuple[str, str]]:
    dropped = (_HOP_BY_HOP - {"content-length"}) | _connection_tokens(
        upstream.headers.get_list("connection")
    )
    headers = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in dropped]
    return headers + [
        ("x-greenbutton-deployment", name),
        ("x-greenbutton-version", str(lease.backend.version)),
    ]


def _connection_tokens(values: list[str]) -> frozenset[str]:
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def _error_response(error: GreenbuttonError, request_id: str, settings: Settings) -> Response:
    """The one error body (``type``, ``message``, ``field``, ``request_id``); a 503 says when
    to retry: the controller's next pass."""
    response = error_response(http_status_for(error), error.type, error.message,
                              field=error.field, request_id=request_id,
                              retry_after_s=math.ceil(settings.controller.poll_interval_s))
    response.headers["x-request-id"] = request_id
    return response
