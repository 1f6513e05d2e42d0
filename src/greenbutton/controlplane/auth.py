"""Bearer-token authentication and authorisation of control-plane requests.

Every control-plane request but the health check and the OpenAPI document names its caller
with a live token (401 otherwise); every authenticated write also leaves a ``token.use``
audit entry.
"""

from __future__ import annotations

from starlette.requests import Request

from ..bearer import bearer_secret
from ..governance.access import Caller
from ..governance.permissions import Action, Resource
from ..store.governance_records import AuditEvent
from .context import of, off_loop

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def authenticate(request: Request) -> Caller:
    """The caller (401 without a live token), once per request."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    access = of(request).access
    secret = bearer_secret(request.headers.get("authorization"))
    caller = await off_loop(access.authenticate, secret)
    request.state.caller = caller
    if request.method not in SAFE_METHODS:
        event = AuditEvent(caller.name, "token.use", f"token:{caller.token_id}",
                           after={"method": request.method, "path": request.url.path})
        await off_loop(access.store.append_audit, [event])
    return caller


async def authorize(request: Request, resource: Resource, action: Action,
                    model: str | None = None) -> Caller:
    """Authenticate, then 403 unless the permission table allows the action."""
    caller = await authenticate(request)
    await off_loop(of(request).access.authorize, caller, resource, action, model)
    return caller


async def readable(request: Request, models: list[str]) -> set[str]:
    """The subset of ``models`` the caller may read."""
    caller = await authenticate(request)
    access = of(request).access

    def check() -> set[str]:
        return {m for m in models if access.is_allowed_to(caller, Resource.MODEL, Action.READ, m)}

    return await off_loop(check)
