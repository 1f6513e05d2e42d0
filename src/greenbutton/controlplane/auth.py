"""Bearer-token authentication and authorisation of control-plane requests.

The control plane built by ``wiring`` always has ``app.state.access``; an app created without
it (tests of the bare API) treats every caller as trusted, as before governance existed.
Every authenticated write also leaves a ``token.use`` audit entry.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..bearer import bearer_secret
from ..governance.access import Access, Caller
from ..governance.permissions import Action, Resource
from ..store.governance_records import AuditEvent

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def access_of(request: Request) -> Access | None:
    """The app's ``Access``, or ``None`` when governance is not wired."""
    access: Access | None = getattr(request.app.state, "access", None)
    return access


async def authenticate(request: Request) -> Caller | None:
    """The caller (401 without a live token); ``None`` when governance is not wired."""
    access = access_of(request)
    if access is None:
        return None
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    secret = bearer_secret(request.headers.get("authorization"))
    caller = await run_in_threadpool(access.authenticate, secret)
    request.state.caller = caller
    if request.method not in SAFE_METHODS:
        event = AuditEvent(caller.name, "token.use", f"token:{caller.token_id}",
                           after={"method": request.method, "path": request.url.path})
        await run_in_threadpool(access.store.append_audit, [event])
    return caller


async def authorize(request: Request, resource: Resource, action: Action,
                    model: str | None = None) -> Caller | None:
    """Authenticate, then 403 unless the permission table allows the action."""
    caller = await authenticate(request)
    access = access_of(request)
    if caller is not None and access is not None:
        await run_in_threadpool(access.authorize, caller, resource, action, model)
    return caller


async def readable(request: Request, models: list[str]) -> set[str]:
    """The subset of ``models`` the caller may read (all when governance is not wired)."""
    caller = await authenticate(request)
    access = access_of(request)
    if caller is None or access is None:
        return set(models)

    def check() -> set[str]:
        assert access is not None and caller is not None
        return {m for m in models if access.is_allowed_to(caller, Resource.MODEL, Action.READ, m)}

    return await run_in_threadpool(check)
