"""The dashboard's HTML pages: thin handlers over the registry, the controller and governance.

Every page is rendered on the server (Jinja2, autoescaped) and reads only what the signed-in
caller may read; ``static/dashboard.js`` adds the buttons' ``fetch`` calls and live refresh.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...controller.loop import Controller, DeploymentStatus
from ...errors import NotFound, PermissionDenied, Unauthenticated
from ...governance.permissions import Action, Resource
from ...registry import Registry, Stage
from ...store.governance_records import RequestRecord
from ..auth import access_of, authorize, readable
from .live import LiveMetrics
from .runs import RunReader
from .templating import render
from .viewer import Viewer, can, page, viewer_of


class Dashboard:
    """Page handlers over the registry, the controller, MLflow runs and live metrics."""

    def __init__(self, registry: Registry, controller: Controller, runs: RunReader,
                 live: LiveMetrics) -> None:
        self._registry = registry
        self._controller = controller
        self._runs = runs
        self._live = live

    async def _deployments_by_model(self, request: Request) -> dict[str, list[DeploymentStatus]]:
        statuses = self._controller.status()
        allowed = await readable(request, [s.name for s in statuses])
        found: dict[str, list[DeploymentStatus]] = {}
        for status in statuses:
            if status.name in allowed:
                found.setdefault(status.model, []).append(status)
        return found

    @page
    async def models(self, request: Request) -> Response:
        """Every registered model the caller may read: stages, latest version, deployment."""
        viewer = await viewer_of(request)
        models = await run_in_threadpool(self._registry.list_models)
        allowed = await readable(request, [m.name for m in models])
        return render("models.html", {
            **viewer.context(), "page": "models",
            "models": [m for m in models if m.name in allowed],
            "deployments": await self._deployments_by_model(request),
        })

    @page
    async def model(self, request: Request) -> Response:
        """One model: versions with their MLflow runs and gates, requests, history, buttons."""
        viewer = await viewer_of(request)
        name = request.path_params["name"]
        await authorize(request, Resource.MODEL, Action.READ, model=name)
        try:
            versions = await run_in_threadpool(self._registry.list_versions, name)
        except NotFound as error:
            return not_found(viewer, error)
        requests = await _requests(request, name)
        return render("model.html", {
            **viewer.context(), "page": "models", "name": name,
            "versions": list(reversed(versions)),
            "runs": {v.version: self._runs.summary(v.run_id) for v in versions},
            "history": list(reversed(self._registry.history(name))),
            "deployments": (await self._deployments_by_model(request)).get(name, []),
            "requests": requests,
            "latest_request": _latest_per_version(requests),
            "can": await _abilities(request, viewer, name),
            "stages": Stage,
        })

    @page
    async def deployments(self, request: Request) -> Response:
        """Every deployment the caller may read."""
        viewer = await viewer_of(request)
        by_model = await self._deployments_by_model(request)
        return render("deployments.html", {
            **viewer.context(), "page": "deployments",
            "deployments": [d for found in by_model.values() for d in found],
        })

    @page
    async def deployment(self, request: Request) -> Response:
        """One deployment: status, backends and the live charts."""
        viewer = await viewer_of(request)
        name = request.path_params["name"]
        await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
        status = self._live.status(name)
        if status is None:
            return not_found(viewer, NotFound(f"no deployment named {name!r}"))
        return render("deployment.html", {
            **viewer.context(), "page": "deployments", "status": status,
            "backends": self._live.backend_urls(name),
        })

    async def live(self, request: Request) -> Response:
        """JSON for the deployment page's charts and tables (polled every few seconds)."""
        name = request.path_params["name"]
        try:
            await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
        except (Unauthenticated, PermissionDenied) as error:
            return _json_error(error.type, error.message,
                               401 if isinstance(error, Unauthenticated) else 403)
        if self._live.status(name) is None:
            return _json_error("deployment_not_found", f"no deployment named {name!r}", 404)
        snapshot = await self._live.snapshot(name)
        return JSONResponse(snapshot, headers={"cache-control": "no-store"})


async def _abilities(request: Request, viewer: Viewer, name: str) -> dict[str, bool]:
    caller = viewer.caller
    return {
        "propose": await can(request, caller, Resource.REQUEST, Action.PROPOSE, name),
        "approve": await can(request, caller, Resource.REQUEST, Action.APPROVE, name),
        "archive": await can(request, caller, Resource.MODEL, Action.ARCHIVE, name),
        "override": await can(request, caller, Resource.REQUEST, Action.OVERRIDE, name),
    }


async def _requests(request: Request, name: str) -> list[RequestRecord]:
    access = access_of(request)
    if access is None:
        return []
    return await run_in_threadpool(access.store.list_requests, name)


def _latest_per_version(requests: list[RequestRecord]) -> dict[int, RequestRecord]:
    latest: dict[int, RequestRecord] = {}
    for record in requests:  # newest first
        latest.setdefault(record.version, record)
    return latest


def not_found(viewer: Viewer, error: NotFound) -> Response:
    """The 404 page."""
    return render("error.html", {**viewer.context(), "page": "", "title": "Not found",
                                 "message": error.message}, status=404)


def _json_error(kind: str, message: str, status: int) -> Response:
    body: dict[str, Any] = {"error": {"type": kind, "message": message, "field": None}}
    return JSONResponse(body, status_code=status)
