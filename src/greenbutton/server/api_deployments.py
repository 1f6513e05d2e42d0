"""Control-plane API for deployment specs and rollback; thin handlers over the controller.

Routes (registered by ``api.routes()``)::

    GET    /api/v1/deployments/{name}/spec     stored spec, or the default one (is_default)
    PUT    /api/v1/deployments/{name}/spec     {"spec": {...}, "actor": "...",
                                                "expected_revision": 3}  -> reconciles now
    DELETE /api/v1/deployments/{name}/spec     {"actor": "..."}: back to the default spec
    POST   /api/v1/models/{name}/rollback      {"actor": "...", "reason": "..."}
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..controller.desired import load_spec
from ..controller.loop import Controller
from ..controller.rollback import rollback
from ..controller.specs import DeploySpec, default_spec
from ..errors import DeploymentNotFound, InvalidInput, NotReady
from ..governance.permissions import Action, Resource
from ..registry import Registry
from ..serving.encoding import JSON, media_type_of, parse_json, read_body
from ..serving.responses import json_response
from ..store.protocol import DeploymentStore, StoredDeploymentSpec
from .auth import authorize

MAX_BODY_BYTES = 64 * 1024
Body = TypeVar("Body", bound=BaseModel)


class PutSpecRequest(BaseModel):
    """Body of ``PUT …/spec``: the spec without its name (the path names it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    spec: dict[str, Any]
    actor: str = Field(min_length=1, max_length=200)
    expected_revision: int | None = Field(default=None, ge=0)


class ActorRequest(BaseModel):
    """Body of ``DELETE …/spec`` and ``POST …/rollback``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=4000)
    expected_revision: int | None = Field(default=None, ge=0)


def routes() -> list[Route]:
    """Every deployment-spec route, in one place."""
    return [
        Route("/api/v1/deployments/{name}/spec", get_spec, methods=["GET"]),
        Route("/api/v1/deployments/{name}/spec", put_spec, methods=["PUT"]),
        Route("/api/v1/deployments/{name}/spec", delete_spec, methods=["DELETE"]),
        Route("/api/v1/models/{name}/rollback", post_rollback, methods=["POST"]),
    ]


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
                    model=request.path_params["name"])  # governance (server/auth.py)
    name = request.path_params["name"]
    stored = _specs(request).get_spec(name)
    if stored is not None:
        return json_response(_render(load_spec(stored), stored))
    if any(s.name == name for s in _controller(request).status()):
        return json_response(_render(default_spec(name), None))
    raise DeploymentNotFound(f"no deployment named {name!r}", field="name")


async def put_spec(request: Request) -> Response:
    """Validate and store a spec; the controller reconciles at once."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (server/auth.py)
    wanted = await _body(request, PutSpecRequest)
    name = request.path_params["name"]
    try:
        spec = DeploySpec.model_validate({**wanted.spec, "name": name})
    except ValidationError as error:
        raise _invalid(error) from None
    if spec.model != name:  # the permission is per model: check the one actually served too
        await authorize(request, Resource.DEPLOYMENT, Action.CHANGE, model=spec.model)
    document = spec.model_dump(mode="json", exclude={"name"})
    actor = caller.name if caller is not None else wanted.actor
    stored = _specs(request).put_spec(name, document, actor=actor,
                                      expected_revision=wanted.expected_revision)
    _controller(request).trigger()
    return json_response(_render(spec, stored))


async def delete_spec(request: Request) -> Response:
    """Forget a stored spec (a Production model falls back to its default spec)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (server/auth.py)
    wanted = await _body(request, ActorRequest)
    name = request.path_params["name"]
    actor = caller.name if caller is not None else wanted.actor
    if not _specs(request).delete_spec(name, actor=actor,
                                       expected_revision=wanted.expected_revision):
        raise DeploymentNotFound(f"no stored spec for {name!r}", field="name")
    _controller(request).trigger()
    return json_response({"deleted": name})


async def post_rollback(request: Request) -> Response:
    """Return a model to its previous Production version (a lifecycle transition)."""
    caller = await authorize(request, Resource.DEPLOYMENT, Action.CHANGE,
                             model=request.path_params["name"])  # governance (server/auth.py)
    wanted = await _body(request, ActorRequest)
    registry: Registry = request.app.state.registry
    name = request.path_params["name"]
    actor = caller.name if caller is not None else wanted.actor
    done = rollback(registry, name, actor=actor, reason=wanted.reason)
    _controller(request).trigger()
    return json_response({"transitions": [
        {"model": t.model, "version": t.version, "from_stage": t.from_stage.value,
         "to_stage": t.to_stage.value, "actor": t.actor, "reason": t.reason,
         "at": t.at.isoformat()} for t in done]}, 201)
