"""Endpoint auth: every serving route but health answers only a bearer token that holds
``invoke`` on the served model (401 without a live token, 403 without the permission).

A serving process holds no platform credential and cannot read greenbutton's store: it asks
the control plane (``GET /api/v1/models/{name}/invoke`` with the caller's token) and caches
each verdict for ``auth.token_cache_ttl_s`` (≤ 2 s by default), so a revoked token or
permission stops working at running endpoints within that time, without restarts. While the
control plane cannot be asked, callers get 503 (never a verdict guessed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import httpx
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..bearer import bearer_secret, hash_secret
from ..config import Settings
from .context import serving_of
from .responses import error_response

OPEN_PREFIXES = ("/health/", "/v2/health/")
"""Paths answered without a token (probes)."""
VERDICTS = frozenset({200, 401, 403})
_MAX_CACHED = 10_000
_ASK_TIMEOUT_S = 5.0


class EndpointAuthority:
    """Decides 200/401/403 (503: undecided) for a token on a model, caching verdicts.

    Usage::

        authority = EndpointAuthority(httpx.AsyncClient(base_url=control_plane_url), 2.0)
        await authority.status_for("gb_…", "digits")  # -> 200, 401, 403 or 503
    """

    def __init__(self, control_plane: httpx.AsyncClient, ttl_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._control_plane = control_plane
        self._ttl_s, self._clock = ttl_s, clock
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    async def status_for(self, secret: str, model: str) -> int:
        """The verdict on ``secret`` for ``model``: cached, else the control plane's."""
        key = (hash_secret(secret), model)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        try:
            answer = await self._control_plane.get(
                f"/api/v1/models/{quote(model, safe='')}/invoke",
                headers={"Authorization": f"Bearer {secret}"}, timeout=_ASK_TIMEOUT_S)
        except httpx.HTTPError:
            return 503
        status = answer.status_code if answer.status_code in VERDICTS else 503
        if status != 503:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (self._clock() + self._ttl_s, status)
        return status

    async def aclose(self) -> None:
        """Close the connection to the control plane."""
        await self._control_plane.aclose()


class EndpointAuthMiddleware:
    """ASGI middleware applying :class:`EndpointAuthority` to every non-health request; the
    token is taken out of the request before the model's code could see it."""

    def __init__(self, app: ASGIApp, authority: EndpointAuthority) -> None:
        self.app, self.authority = app, authority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        raw = dict(scope["headers"]).get(b"authorization", b"")
        secret = bearer_secret(raw.decode("latin-1"))
        status = 401
        if secret is not None:
            status = await self.authority.status_for(secret, _served_model(scope))
        if status == 200:
            await self.app({**scope, "headers": headers}, receive, send)
            return
        await _refuse(scope, receive, send, status)


def endpoint_auth(settings: Settings, authority: EndpointAuthority | None = None) -> Middleware:
    """The middleware a serving app installs when endpoint auth is required; by default it
    asks the control plane at ``server.url``."""
    if authority is None:
        client = httpx.AsyncClient(base_url=settings.server.url, trust_env=False)
        authority = EndpointAuthority(client, settings.auth.token_cache_ttl_s)
    return Middleware(EndpointAuthMiddleware, authority=authority)


def _served_model(scope: Scope) -> str:
    return serving_of(scope["app"]).dataplane.name


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    if status == 401:
        kind, message = "unauthenticated", "a bearer token with 'invoke' on this model is required"
    elif status == 403:
        kind, message = "permission_denied", "this token may not invoke this model"
    else:
        kind, message = "not_ready", "the control plane that checks tokens cannot be reached"
    request_id = (scope.get("state") or {}).get("request_id")
    response = error_response(status, kind, message, field=None, request_id=request_id)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    elif status == 503:
        response.headers["Retry-After"] = "1"
    await response(scope, receive, send)
