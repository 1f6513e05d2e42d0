"""Endpoint auth: every serving route but health answers only a bearer token that holds
``invoke`` on the served model (401 without a live token, 403 without the permission).

Tokens and grants are read from greenbutton's store (URI from the settings the controller
passes down; never migrated from here); each verdict is cached for
``auth.token_cache_ttl_s`` (≤ 2 s by default), so a revoked token or permission stops working
at running endpoints within that time, without restarts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..governance.permissions import Action, Resource, is_allowed
from ..governance.tokens import bearer_secret, hash_secret
from ..store.governance_sql import SqlGovernanceStore, open_governance_store
from .responses import error_response

OPEN_PREFIXES = ("/health/", "/v2/health/")
"""Paths answered without a token (probes)."""
_MAX_CACHED = 10_000


class EndpointAuthority:
    """Decides 200/401/403 for a token on a model, caching each verdict for ``ttl_s``.

    Usage::

        authority = EndpointAuthority(lambda: SqlGovernanceStore(uri, migrate=False), 2.0)
        authority.status_for("gb_…", "digits")  # -> 200, 401 or 403
    """

    def __init__(self, open_store: Callable[[], SqlGovernanceStore], ttl_s: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open_store = open_store
        self._store: SqlGovernanceStore | None = None
        self._ttl_s, self._clock = ttl_s, clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    def cached(self, secret: str, model: str) -> int | None:
        """The cached verdict, if still fresh."""
        hit = self._cache.get((hash_secret(secret), model))
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    def status_for(self, secret: str, model: str) -> int:
        """Look the token up in the store (blocking: call from a worker thread)."""
        key = (hash_secret(secret), model)
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            store = self._store
        found = store.principal_for_secret(key[0])
        if found is None:
            status = 401
        else:
            principal = found[0]
            granted = store.permissions_on(principal.name, model)
            allowed = is_allowed(Resource.ENDPOINT, Action.INVOKE, principal.role, granted)
            status = 200 if allowed else 403
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (self._clock() + self._ttl_s, status)
        return status

    def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            self._store.close()


class EndpointAuthMiddleware:
    """ASGI middleware applying :class:`EndpointAuthority` to every non-health request."""

    def __init__(self, app: ASGIApp, authority: EndpointAuthority) -> None:
        self.app, self.authority = app, authority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        secret = bearer_secret(headers.get(b"authorization", b"").decode("latin-1"))
        status = 401
        if secret is not None:
            model = _served_model(scope)
            cached = self.authority.cached(secret, model)
            status = cached if cached is not None else await anyio.to_thread.run_sync(
                self.authority.status_for, secret, model)
        if status == 200:
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, status)


def endpoint_auth(settings: Settings) -> Middleware:
    """The middleware a serving app installs when ``auth.is_endpoint_auth_enabled``."""
    uri = settings.store.uri
    authority = EndpointAuthority(lambda: open_governance_store(uri, migrate=False),
                                  settings.auth.token_cache_ttl_s)
    return Middleware(EndpointAuthMiddleware, authority=authority)


def _served_model(scope: Scope) -> str:
    app = scope.get("app")
    dataplane = getattr(getattr(app, "state", None), "dataplane", None)
    return str(getattr(dataplane, "name", None) or "")


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    if status == 401:
        kind, message = "unauthenticated", "a bearer token with 'invoke' on this model is required"
    else:
        kind, message = "permission_denied", "this token may not invoke this model"
    request_id = (scope.get("state") or {}).get("request_id")
    response = error_response(status, kind, message, field=None, request_id=request_id)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response(scope, receive, send)
