"""One deployment: its rollout, routes and shadow (editable), traffic, quality, drift, logs.

The page is rendered once; ``static/deployment.js`` polls ``/deployments/{name}/live`` for the
charts and tables and ``/deployments/{name}/logs`` for the serving log. Editing the routes is a
``PUT /api/v1/deployments/{name}/spec`` from the page: the API's permission check and audit.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...controller.specs import ALIASES, DeploySpec
from ...errors import DeploymentNotFound, NotFound
from ...governance.permissions import Action, Resource
from ...registry import VersionInfo
from ..auth import authorize
from .live_view import live_json
from .pages import not_found
from .rollout import spec_of, wanted_of
from .sources import Sources
from .templating import render
from .viewer import can, page, viewer_of

NO_STORE = {"cache-control": "no-store"}


class DeploymentPage:
    """``/deployments/{name}`` and its JSON feeds."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    @page
    async def show(self, request: Request) -> Response:
        """The page: state, routes and shadow with their editor, charts and tables."""
        viewer = await viewer_of(request)
        name = request.path_params["name"]
        await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
        sources = self._sources
        status = sources.live.status(name)
        if status is None:
            return not_found(viewer, NotFound(f"no deployment named {name!r}"))
        versions = await sources.versions(status.model)
        spec, stored = await run_in_threadpool(spec_of, sources.deployments, name,
                                               status.model)
        rollout = await sources.rollout(request, status, versions)
        return render("deployment.html", {
            **viewer.context(), "page": "deployments", "status": status, "rollout": rollout,
            "backends": sources.live.backend_urls(name),
            "spec": spec, "rules": _rules(spec, versions),
            "spec_document": None if spec is None else spec.model_dump(mode="json",
                                                                       exclude={"name"}),
            "revision": stored.revision if stored else 0,
            "updated": stored,
            "versions": sorted((v.version for v in versions), reverse=True),
            "aliases": sorted(ALIASES),
            "can_change": await can(request, viewer.caller, Resource.DEPLOYMENT, Action.CHANGE,
                                    status.model),
            "version_link": sources.links.version(status.model, status.serving_version)
            if status.serving_version else None,
            "has_logs": sources.logs.is_available,
        })

    async def live(self, request: Request) -> Response:
        """JSON for the charts and tables (polled every few seconds); ``?features=a,b``
        picks the features whose drift is charted over time."""
        name = request.path_params["name"]
        await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
        live = self._sources.live
        if live.status(name) is None:
            raise DeploymentNotFound(f"no deployment named {name!r}", field="name")
        await live.refresh(name)
        status = live.status(name)
        if status is None:  # removed while we scraped
            raise DeploymentNotFound(f"no deployment named {name!r}", field="name")
        rollout = await self._sources.rollout(request, status)
        asked = [f for f in request.query_params.get("features", "").split(",") if f][:8]
        body = live_json(status, rollout, live.history, live.quality, live.backend_urls(name),
                         asked)
        return JSONResponse(body, headers=NO_STORE)

    async def logs(self, request: Request) -> Response:
        """The last lines of each serving process's log (readers of the deployment may see
        them: a failed version's status already quotes its log's tail)."""
        name = request.path_params["name"]
        await authorize(request, Resource.DEPLOYMENT, Action.READ, model=name)
        if self._sources.live.status(name) is None:
            raise DeploymentNotFound(f"no deployment named {name!r}", field="name")
        found = await run_in_threadpool(self._sources.logs.tail, name)
        body: dict[str, Any] = {"name": name, "is_available": found is not None,
                                "backends": [asdict(b) for b in found or []]}
        return JSONResponse(body, headers=NO_STORE)


def _rules(spec: DeploySpec | None, versions: list[VersionInfo]) -> list[dict[str, Any]]:
    """Each route and shadow rule with the version it resolves to now and its share."""
    if spec is None:
        return []
    wanted = wanted_of(spec, versions)
    stages = {v.stage: v.version for v in versions}

    def version_of(to: str | int) -> int | None:
        return to if isinstance(to, int) else stages.get(ALIASES[to])

    live = [r.weight for r in spec.routes if version_of(r.to) is not None]
    total = sum(live) or 1  # routes to an alias with no version now are left out
    rows: list[dict[str, Any]] = [
        {"kind": "route", "to": r.to, "version": version_of(r.to), "weight": r.weight,
         "share": None if version_of(r.to) is None else round(100 * r.weight / total)}
        for r in spec.routes]
    mirrored = wanted.mirrors if wanted is not None else {}
    rows += [{"kind": "shadow", "to": s.to, "version": version_of(s.to), "weight": s.percent,
              "share": s.percent if version_of(s.to) in mirrored else None}
             for s in spec.shadow]
    return rows
