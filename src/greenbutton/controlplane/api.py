"""The control-plane HTTP API: thin handlers over the registry and the controller."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..dataplane.encoding import read_json_body
from ..dataplane.responses import json_response
from ..errors import DeploymentNotFound
from ..governance.permissions import Action, Resource
from ..registry import Stage
from . import api_deployments, api_governance
from .auth import authenticate, authorize, readable
from .context import of, off_loop
from .openapi import documented

MAX_BODY_BYTES = 64 * 1024


class TransitionRequest(BaseModel):
    """Body of ``POST …/transitions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stage: Stage
    actor: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=4000)

    @field_validator("stage", mode="before")
    @classmethod
    def _stage_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            for stage in Stage:
                if stage.value.lower() == value.strip().lower():
                    return stage
        return value


def routes() -> list[Route]:
    """Every control-plane API route, in one place."""
    return [
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/api/v1/models/{name}/versions", list_versions, methods=["GET"]),
        Route("/api/v1/models/{name}/versions/{ref}", get_version, methods=["GET"]),
        Route("/api/v1/models/{name}/versions/{ref}/transitions", transition, methods=["POST"]),
        Route("/api/v1/models/{name}/transitions", history, methods=["GET"]),
        Route("/api/v1/models/{name}/invoke", may_invoke, methods=["GET"]),
        Route("/api/v1/integrity", integrity, methods=["GET"]),
        Route("/api/v1/deployments", list_deployments, methods=["GET"]),
        Route("/api/v1/deployments/{name}", get_deployment, methods=["GET"]),
        *api_deployments.routes(),
        *api_governance.routes(),
    ]


def _ok(content: Any, status: int = 200) -> Response:
    return json_response(content, status)


def _plain(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


@documented(is_open=True)
async def health(request: Request) -> Response:
    """The control plane answers; ``leader``: this replica runs the reconcile loop;
    ``endpoint_auth``: its endpoints need a token holding ``invoke``."""
    plane = of(request)
    return _ok({"status": "ok", "leader": plane.leadership.is_leader,
                "endpoint_auth": plane.settings.is_endpoint_auth_required})


async def list_models(request: Request) -> Response:
    """Registered models and the versions in each stage (those the caller may read)."""
    models = await off_loop(of(request).registry.list_models)
    allowed = await readable(request, [m.name for m in models])
    return _ok({"models": [_plain(m) for m in models if m.name in allowed]})


async def list_versions(request: Request) -> Response:
    """Versions of one model."""
    await authorize(request, Resource.MODEL, Action.READ, model=request.path_params["name"])
    versions = await off_loop(of(request).registry.list_versions, request.path_params["name"])
    return _ok({"versions": [_plain(v) for v in versions]})


async def get_version(request: Request) -> Response:
    """One version, by number or by reference (``production``, ``latest``…)."""
    await authorize(request, Resource.MODEL, Action.READ, model=request.path_params["name"])
    registry, name = of(request).registry, request.path_params["name"]
    version = await off_loop(registry.resolve, name, request.path_params["ref"])
    return _ok(_plain(await off_loop(registry.get_version, name, version)))


@documented(body=TransitionRequest, ok=(201, 202))
async def transition(request: Request) -> Response:
    """Move a version to another stage through ``Approvals.promote`` (propose, gates, approve
    when allowed); the controller reconciles at once. The caller is recorded, not ``actor``."""
    caller = await authenticate(request)
    wanted = await read_json_body(request, TransitionRequest, MAX_BODY_BYTES)
    name = request.path_params["name"]
    version = await off_loop(of(request).registry.resolve, name, request.path_params["ref"])
    return await api_governance.promote(request, caller, name, version, wanted.stage,
                                        wanted.reason)


async def may_invoke(request: Request) -> Response:
    """Whether the bearer may call the model's endpoints: 200, 401 or 403 (serving processes
    ask this instead of reading the store; they cache the answer for a moment)."""
    caller = await authorize(request, Resource.ENDPOINT, Action.INVOKE,
                             model=request.path_params["name"])
    return _ok({"model": request.path_params["name"],
                "principal": caller.name})


async def history(request: Request) -> Response:
    """Every transition of a model, oldest first."""
    await authorize(request, Resource.MODEL, Action.READ, model=request.path_params["name"])
    done = await off_loop(of(request).registry.history, request.path_params["name"])
    return _ok({"transitions": [_plain(t) for t in done]})


async def integrity(request: Request) -> Response:
    """What the lifecycle guard found: a broken audit log (deployments frozen), stage rows and
    MLflow aliases changed behind greenbutton's back (put back)."""
    await authorize(request, Resource.AUDIT, Action.VERIFY)
    report = of(request).guard.report()
    return _ok({
        "problem": report.problem,
        "checked_seq": report.checked_seq,
        "repaired_stages": [{"model": d.model, "version": d.version, "stored": d.stored.value,
                             "governed": d.governed.value} for d in report.repaired_stages],
        "repaired_aliases": [{"model": d.model, "alias": d.alias, "mlflow": d.mlflow_version,
                              "governed": d.lifecycle_version} for d in report.repaired_aliases],
    })


async def list_deployments(request: Request) -> Response:
    """What runs, in which state, at which stable URL (those the caller may read)."""
    statuses = of(request).controller.status()
    allowed = await readable(request, [s.name for s in statuses])
    return _ok({"deployments": [s.model_dump(mode="json") for s in statuses
                                if s.name in allowed]})


async def get_deployment(request: Request) -> Response:
    """One deployment's status."""
    name = request.path_params["name"]
    await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
    for status in of(request).controller.status():
        if status.name == name:
            return _ok(status.model_dump(mode="json"))
    raise DeploymentNotFound(f"no deployment named {name!r}", field="name")
