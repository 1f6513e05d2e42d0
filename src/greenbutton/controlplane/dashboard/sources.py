"""What the dashboard's pages read: the registry, the controller, MLflow, live numbers, logs.

Read-only: every change a page offers is a ``fetch`` of the JSON API (``/api/v1``), checked
and audited there like the CLI's calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...controller.loop import Controller, DeploymentStatus
from ...errors import NotFound
from ...registry import Registry, VersionInfo
from ...store.protocol import DeploymentStore
from ..auth import readable
from .live import LiveMetrics
from .rollout import Rollout, rollout_of, spec_of, wanted_of
from .runs import MlflowLinks, RunReader
from .serving_logs import ServingLogs


@dataclass(frozen=True)
class Sources:
    """Everything a page handler reads, built once by ``build_dashboard``."""

    registry: Registry
    controller: Controller
    deployments: DeploymentStore
    runs: RunReader
    links: MlflowLinks
    live: LiveMetrics
    logs: ServingLogs

    async def deployments_by_model(self, request: Request) -> dict[str, list[DeploymentStatus]]:
        """model → its deployments the caller may read."""
        statuses = self.controller.status()
        allowed = await readable(request, [s.name for s in statuses])
        found: dict[str, list[DeploymentStatus]] = {}
        for status in statuses:
            if status.name in allowed:
                found.setdefault(status.model, []).append(status)
        return found

    async def versions(self, model: str) -> list[VersionInfo]:
        """The model's versions with their stages (empty when it is gone from MLflow)."""
        try:
            return await run_in_threadpool(self.registry.list_versions, model)
        except NotFound:
            return []

    async def rollout(self, request: Request, status: DeploymentStatus,
                      versions: list[VersionInfo] | None = None) -> Rollout:
        """Where ``status``'s rollout stands, given the lifecycle and its spec now."""
        if versions is None:
            versions = await self.versions(status.model)
        spec, _ = await run_in_threadpool(spec_of, self.deployments, status.name, status.model)
        return rollout_of(status, wanted_of(spec, versions))


def json_error(kind: str, message: str, status: int) -> Response:
    """An error body shaped like the API's."""
    body: dict[str, Any] = {"error": {"type": kind, "message": message, "field": None}}
    return JSONResponse(body, status_code=status)
