"""The dashboard's model pages: thin handlers over the registry, the controller and governance.

Every page is rendered on the server (Jinja2, autoescaped) and reads only what the signed-in
caller may read; ``static/dashboard.js`` adds the buttons' ``fetch`` calls and live refresh.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import NotFound
from ...governance.permissions import Action, Resource
from ...registry import Stage
from ...store.governance_records import RequestRecord
from ..auth import authorize, readable
from ..context import of
from .sources import Sources
from .templating import render
from .viewer import Viewer, can, page, viewer_of


class Dashboard:
    """Models, one model (with its live rollout state) and the deployments list."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    @page
    async def models(self, request: Request) -> Response:
        """Every registered model the caller may read: stages, latest version, deployment."""
        viewer = await viewer_of(request)
        models = await run_in_threadpool(self._sources.registry.list_models)
        allowed = await readable(request, [m.name for m in models])
        return render("models.html", {
            **viewer.context(), "page": "models",
            "models": [m for m in models if m.name in allowed],
            "deployments": await self._sources.deployments_by_model(request),
        })

    @page
    async def model(self, request: Request) -> Response:
        """One model: versions with their MLflow runs and gates, requests, history, buttons."""
        viewer = await viewer_of(request)
        name = request.path_params["name"]
        await authorize(request, Resource.MODEL, Action.READ, model=name)
        sources = self._sources
        try:
            versions = await run_in_threadpool(sources.registry.list_versions, name)
        except NotFound as error:
            return not_found(viewer, error)
        requests = await _requests(request, name)
        # MLflow and the store are read off the event loop: it also proxies the stable URLs
        runs = await run_in_threadpool(
            lambda: {v.version: sources.runs.summary(v.run_id) for v in versions})
        history = await run_in_threadpool(sources.registry.history, name)
        deployments = (await sources.deployments_by_model(request)).get(name, [])
        return render("model.html", {
            **viewer.context(), "page": "models", "name": name,
            "versions": list(reversed(versions)),
            "runs": runs,
            "run_links": {v: sources.links.run(r) for v, r in runs.items()},
            "version_links": {v.version: sources.links.version(name, v.version)
                              for v in versions},
            "history": list(reversed(history)),
            "deployments": deployments,
            "rollouts": {d.name: await sources.rollout(request, d, versions)
                         for d in deployments},
            "requests": requests,
            "latest_request": _latest_per_version(requests),
            "can": await _abilities(request, viewer, name),
            "stages": Stage,
        })

    async def model_live(self, request: Request) -> Response:
        """JSON for the model page's live parts: stages and each deployment's rollout."""
        name = request.path_params["name"]
        await authorize(request, Resource.MODEL, Action.READ, model=name)
        sources = self._sources
        versions = await sources.versions(name)
        deployments = (await sources.deployments_by_model(request)).get(name, [])
        found: list[dict[str, Any]] = []
        for status in deployments:
            rollout = await sources.rollout(request, status, versions)
            found.append({**status.model_dump(mode="json"),
                          "rollout": {"step": rollout.step.value, "text": rollout.text}})
        return JSONResponse({
            "name": name,
            "versions": [{"version": v.version, "stage": v.stage.value} for v in versions],
            "deployments": found,
        }, headers={"cache-control": "no-store"})

    @page
    async def deployments(self, request: Request) -> Response:
        """Every deployment the caller may read."""
        viewer = await viewer_of(request)
        by_model = await self._sources.deployments_by_model(request)
        return render("deployments.html", {
            **viewer.context(), "page": "deployments",
            "deployments": [d for found in by_model.values() for d in found],
        })


async def _abilities(request: Request, viewer: Viewer, name: str) -> dict[str, bool]:
    caller = viewer.caller
    return {
        "propose": await can(request, caller, Resource.REQUEST, Action.PROPOSE, name),
        "approve": await can(request, caller, Resource.REQUEST, Action.APPROVE, name),
        "archive": await can(request, caller, Resource.MODEL, Action.ARCHIVE, name),
        "override": await can(request, caller, Resource.REQUEST, Action.OVERRIDE, name),
    }


async def _requests(request: Request, name: str) -> list[RequestRecord]:
    return await run_in_threadpool(of(request).access.store.list_requests, name)


def _latest_per_version(requests: list[RequestRecord]) -> dict[int, RequestRecord]:
    latest: dict[int, RequestRecord] = {}
    for record in requests:  # newest first
        latest.setdefault(record.version, record)
    return latest


def not_found(viewer: Viewer, error: NotFound) -> Response:
    """The 404 page."""
    return render("error.html", {**viewer.context(), "page": "", "title": "Not found",
                                 "message": error.message}, status=404)
