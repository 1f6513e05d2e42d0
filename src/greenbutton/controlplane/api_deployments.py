"""Control-plane API for deployment specs and rollback; thin handlers over the controller.

Routes (registered by ``api.routes()``)::

    GET    /api/v1/deployments/{name}/spec     stored spec, or the default one (is_default)
    PUT    /api/v1/deployments/{name}/spec     {"spec": {...}, "actor": "...",
                                                "expected_revision": 3}  -> reconciles now
    DELETE /api/v1/deployments/{name}/spec     {}: back to the default spec
    POST   /api/v1/models/{name}/rollback      {"reason": "..."}
    POST   /api/v1/reconcile                   webhook (CI, GitOps): a reconcile pass now

The recorded actor is always the authenticated caller; a body's ``actor`` is accepted for
older clients and ignored. Spec changes go through the approval workflow (checked against
the lifecycle, four-eyes where the model's policy says so); they, rollbacks and webhook
calls are audited.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..controller.desired import load_spec
from ..controller.rollback import rollback
from ..controller.specs import DeploySpec, default_spec
from ..dataplane.encoding import Body, read_json_body
from ..dataplane.responses import json_response
from ..errors import DeploymentNotFound, InvalidInput, PermissionDenied
from ..governance.access import Caller
from ..governance.approvals import SpecChange
from ..governance.permissions import Action, Permission, Resource
from ..store.governance_records import AuditEvent, RequestRecord
from ..store.protocol import StoredDeploymentSpec
from .api_governance import plain
from .auth import authenticate, authorize
from .context import of, off_loop
from .openapi import documented

MAX_BODY_BYTES = 64 * 1024


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


async def _body(request: Request, model: type[Body]) -> Body:
    return await read_json_body(request, model, MAX_BODY_BYTES)


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
                    model=request.path_params["name"])
    name = request.path_params["name"]
    stored = await off_loop(of(request).deployments.get_spec, name)
    if stored is not None:
        return json_response(_render(load_spec(stored), stored))
    if any(s.name == name for s in of(request).controller.status()):
        return json_response(_render(default_spec(name), None))
    raise DeploymentNotFound(f"no deployment named {name!r}", field="name")


@documented(body=PutSpecRequest, ok=(200, 202))
async def put_spec(request: Request) -> Response:
    """Validate and store a spec, the controller reconciling at once (200); under four-eyes,
    record a request for someone else to approve (202)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])
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
    stored = await off_loop(of(request).deployments.get_spec, name)
    return json_response(_render(spec, stored))


@documented(body=ActorRequest, ok=(200, 202))
async def delete_spec(request: Request) -> Response:
    """Forget a stored spec (a Production model falls back to its default spec); under
    four-eyes, a request (202)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])
    wanted = await _body(request, ActorRequest)
    name = request.path_params["name"]
    stored = await off_loop(of(request).deployments.get_spec, name)
    if stored is None:
        raise DeploymentNotFound(f"no stored spec for {name!r}", field="name")
    model = str(stored.spec.get("model", name))
    await authorize(request, Resource.DEPLOYMENT, Action.CHANGE, model=model)
    change = SpecChange(name, model, None, wanted.expected_revision)
    pending = await _change(request, caller, change, wanted.reason)
    if pending is not None:
        return json_response({"request": plain(pending)}, 202)
    return json_response({"deleted": name})


async def _change(request: Request, caller: Caller, change: SpecChange,
                  reason: str | None) -> RequestRecord | None:
    """Through the approval workflow: the pending request under four-eyes, else ``None``
    (applied, the controller reconciling at once)."""
    plane = of(request)
    outcome = await off_loop(plane.approvals.change_deployment, caller, change, reason)
    if outcome.request is not None:
        return outcome.request
    plane.controller.trigger()
    return None


@documented(body=ActorRequest, ok=(201,))
async def post_rollback(request: Request) -> Response:
    """Return a model to its previous Production version (a lifecycle transition)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])
    wanted = await _body(request, ActorRequest)
    plane, name = of(request), request.path_params["name"]
    done = await off_loop(rollback, plane.registry, name, actor=caller.name,
                          reason=wanted.reason)
    plane.controller.trigger()
    return json_response({"transitions": [
        {"model": t.model, "version": t.version, "from_stage": t.from_stage.value,
         "to_stage": t.to_stage.value, "actor": t.actor, "reason": t.reason,
         "at": t.at.isoformat()} for t in done]}, 201)


@documented(ok=(202,))
async def post_reconcile(request: Request) -> Response:
    """Webhook: run a reconcile pass now (``deploy`` on some model, or a role implying it)."""
    caller = await authenticate(request)
    plane = of(request)
    access = plane.access

    def may_deploy() -> bool:
        return access.is_allowed_to(caller, Resource.DEPLOYMENT, Action.CHANGE) or any(
            g.permission == Permission.DEPLOY for g in access.store.list_grants(caller.name))

    if not await off_loop(may_deploy):
        raise PermissionDenied(f"{caller.name!r} may not deploy anything")
    await off_loop(access.store.append_audit, [AuditEvent(
        caller.name, "controller.reconcile", "controller", after={"via": "webhook"})])
    plane.controller.trigger()
    return json_response({"triggered": True}, 202)
