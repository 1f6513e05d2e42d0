"""Control-plane API for deployment specs and rollback; thin handlers over the controller.

Routes (registered by ``api.routes()``)::

    GET    /api/v1/deployments/{name}/spec     stored spec, or the default one (is_default)
    PUT    /api/v1/deployments/{name}/spec     {"spec": {...}, "actor": "...",
                                                "expected_revision": 3}  -> reconciles now
    DELETE /api/v1/deployments/{name}/spec     {}: back to the default spec
    POST   /api/v1/models/{name}/rollback      {"reason": "..."}
    POST   /api/v1/reconcile                   webhook (CI, GitOps): a reconcile pass now

The recorded actor is always the authenticated caller; a body's ``actor`` is accepted for
older clients and ignored. Spec changes, rollbacks and webhook calls are audited.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..controller.desired import load_spec
from ..controller.loop import Controller
from ..controller.rollback import rollback
from ..controller.specs import DeploySpec, check_spec_change, default_spec
from ..dataplane.encoding import JSON, media_type_of, parse_json, read_body
from ..dataplane.responses import json_response
from ..errors import DeploymentNotFound, InvalidInput, NotReady, PermissionDenied
from ..governance.access import Caller
from ..governance.approvals import Approvals, SpecChange
from ..governance.permissions import Action, Permission, Resource
from ..registry import Registry
from ..store.governance_records import AuditEvent, RequestRecord
from ..store.protocol import DeploymentStore, StoredDeploymentSpec
from .api_governance import plain
from .auth import access_of, authenticate, authorize
from .openapi import documented

MAX_BODY_BYTES = 64 * 1024
ANONYMOUS = "anonymous"
"""Recorded actor when governance is not wired (bare API in tests): never a body's claim."""
Body = TypeVar("Body", bound=BaseModel)


class PutSpecRequest(BaseModel):
    """Body of ``PUT …/spec``: the spec without its name (the path names it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    spec: dict[str, Any]
    actor: str | None = Field(default=None, max_length=200)
    """Ignored: the authenticated caller is recorded."""
    expected_revision: int | None = Field(default=None, ge=0, le=2**31 - 1)
    reason: str | None = Field(default=None, max_length=4000)
    """Why (kept with the request under four-eyes)."""


class ActorRequest(BaseModel):
    """Body of ``DELETE …/spec`` and ``POST …/rollback``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actor: str | None = Field(default=None, max_length=200)
    """Ignored: the authenticated caller is recorded."""
    reason: str | None = Field(default=None, max_length=4000)
    expected_revision: int | None = Field(default=None, ge=0, le=2**31 - 1)


def routes() -> list[Route]:
    """Every deployment-spec route, in one place."""
    return [
        Route("/api/v1/deployments/{name}/spec", get_spec, methods=["GET"]),
        Route("/api/v1/deployments/{name}/spec", put_spec, methods=["PUT"]),
        Route("/api/v1/deployments/{name}/spec", delete_spec, methods=["DELETE"]),
        Route("/api/v1/models/{name}/rollback", post_rollback, methods=["POST"]),
        Route("/api/v1/reconcile", post_reconcile, methods=["POST"]),
    ]


def _actor(caller: Caller | None) -> str:
    return caller.name if caller is not None else ANONYMOUS


async def _audit(request: Request, event: AuditEvent) -> None:
    """Append ``event`` to the governance audit log (nothing when governance is not wired)."""
    access = access_of(request)
    if access is not None:
        await run_in_threadpool(access.store.append_audit, [event])


def _specs(request: Request) -> DeploymentStore:
    specs: DeploymentStore | None = getattr(request.app.state, "deployment_store", None)
    if specs is None:
        raise NotReady("this control plane keeps no deployment specs")
    return specs


def _controller(request: Request) -> Controller:
    controller: Controller = request.app.state.controller
    return controller


async def _body(request: Request, model: type[Body]) -> Body:
    media_type_of(request, frozenset({JSON}))
    raw = parse_json(await read_body(request, MAX_BODY_BYTES))
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _invalid(error) from None


def _invalid(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return InvalidInput(f"{field}: {first['msg']}", field=field)


def _render(spec: DeploySpec, stored: StoredDeploymentSpec | None) -> dict[str, Any]:
    return {
        "spec": spec.model_dump(mode="json"),
        "revision": stored.revision if stored else 0,
        "updated_at": stored.updated_at.isoformat() if stored else None,
        "updated_by": stored.updated_by if stored else None,
        "is_default": stored is None,
    }


async def get_spec(request: Request) -> Response:
    """The stored spec, or the default one of a model deployed under its own name."""
    await authorize(request, Resource.DEPLOYMENT, Action.READ,
                    model=request.path_params["name"])  # governance (controlplane/auth.py)
    name = request.path_params["name"]
    stored = _specs(request).get_spec(name)
    if stored is not None:
        return json_response(_render(load_spec(stored), stored))
    if any(s.name == name for s in _controller(request).status()):
        return json_response(_render(default_spec(name), None))
    raise DeploymentNotFound(f"no deployment named {name!r}", field="name")


@documented(body=PutSpecRequest, ok=(200, 202))
async def put_spec(request: Request) -> Response:
    """Validate and store a spec, the controller reconciling at once (200); under four-eyes,
    record a request for someone else to approve (202)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (controlplane/auth.py)
    wanted = await _body(request, PutSpecRequest)
    name = request.path_params["name"]
    try:
        spec = DeploySpec.model_validate({**wanted.spec, "name": name})
    except ValidationError as error:
        raise _invalid(error) from None
    if spec.model != name:  # the permission is per model: check the one actually served too
        await authorize(request, Resource.DEPLOYMENT, Action.CHANGE, model=spec.model)
    change = SpecChange(name, spec.model, spec.model_dump(mode="json", exclude={"name"}),
                        wanted.expected_revision)
    pending = await _change(request, caller, change, wanted.reason)
    if pending is not None:
        return json_response({"request": plain(pending)}, 202)
    stored = await run_in_threadpool(_specs(request).get_spec, name)
    return json_response(_render(spec, stored))


@documented(body=ActorRequest, ok=(200, 202))
async def delete_spec(request: Request) -> Response:
    """Forget a stored spec (a Production model falls back to its default spec); under
    four-eyes, a request (202)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (controlplane/auth.py)
    wanted = await _body(request, ActorRequest)
    name = request.path_params["name"]
    stored = await run_in_threadpool(_specs(request).get_spec, name)
    if stored is None:
        raise DeploymentNotFound(f"no stored spec for {name!r}", field="name")
    model = str(stored.spec.get("model", name))
    await authorize(request, Resource.DEPLOYMENT, Action.CHANGE, model=model)
    change = SpecChange(name, model, None, wanted.expected_revision)
    pending = await _change(request, caller, change, wanted.reason)
    if pending is not None:
        return json_response({"request": plain(pending)}, 202)
    return json_response({"deleted": name})


async def _change(request: Request, caller: Caller | None, change: SpecChange,
                  reason: str | None) -> RequestRecord | None:
    """Through the approval workflow (the pending request under four-eyes, else ``None``);
    without governance (the bare API of tests), checked and stored directly."""
    approvals: Approvals | None = getattr(request.app.state, "approvals", None)
    if caller is not None and approvals is not None:
        outcome = await run_in_threadpool(approvals.change_deployment, caller, change, reason)
        if outcome.request is not None:
            return outcome.request
    else:
        registry: Registry = request.app.state.registry
        await run_in_threadpool(lambda: check_spec_change(
            change, registry.lifecycle_states(change.model)))
        specs = _specs(request)
        if change.spec is None:
            await run_in_threadpool(lambda: specs.delete_spec(
                change.name, actor=ANONYMOUS, expected_revision=change.expected_revision))
        else:
            spec = change.spec
            await run_in_threadpool(lambda: specs.put_spec(
                change.name, spec, actor=ANONYMOUS, expected_revision=change.expected_revision))
    _controller(request).trigger()
    return None


@documented(body=ActorRequest, ok=(201,))
async def post_rollback(request: Request) -> Response:
    """Return a model to its previous Production version (a lifecycle transition)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (controlplane/auth.py)
    wanted = await _body(request, ActorRequest)
    registry: Registry = request.app.state.registry
    name = request.path_params["name"]
    actor = _actor(caller)
    done = await run_in_threadpool(rollback, registry, name, actor=actor, reason=wanted.reason)
    _controller(request).trigger()
    return json_response({"transitions": [
        {"model": t.model, "version": t.version, "from_stage": t.from_stage.value,
         "to_stage": t.to_stage.value, "actor": t.actor, "reason": t.reason,
         "at": t.at.isoformat()} for t in done]}, 201)


@documented(ok=(202,))
async def post_reconcile(request: Request) -> Response:
    """Webhook: run a reconcile pass now (``deploy`` on some model, or a role implying it)."""
    caller = await authenticate(request)  # governance (controlplane/auth.py)
    access = access_of(request)
    if caller is not None and access is not None:
        def may_deploy() -> bool:
            return access.is_allowed_to(caller, Resource.DEPLOYMENT, Action.CHANGE) or any(
                g.permission == Permission.DEPLOY for g in access.store.list_grants(caller.name))

        if not await run_in_threadpool(may_deploy):
            raise PermissionDenied(f"{caller.name!r} may not deploy anything")
    await _audit(request, AuditEvent(_actor(caller), "controller.reconcile", "controller",
                                     after={"via": "webhook"}))
    _controller(request).trigger()
    return json_response({"triggered": True}, 202)
