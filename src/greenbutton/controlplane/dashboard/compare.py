"""Versions of one model side by side: params, metrics, gate results and live quality.

``GET /models/{name}/compare?v=1&v=2`` (two to four versions; default: the Production version
and the newest other one). Params and metrics come from the MLflow runs, gate results from
governance, live figures from the payload store (feedback and the latest drift test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidInput, NotFound
from ...governance.permissions import Action, Resource
from ...monitoring.payload_store import FeedbackSummary
from ...registry import Stage, VersionInfo
from ...store.governance_records import GateOutcome
from ..auth import authorize
from ..context import of
from .pages import not_found
from .quality import DriftTest, parse_test
from .runs import RunSummary
from .sources import Sources
from .templating import render
from .viewer import page, viewer_of

MAX_VERSIONS = 4


@dataclass
class Column:
    """Everything shown about one version."""

    info: VersionInfo
    run: RunSummary | None
    run_link: str | None
    gates: dict[str, GateOutcome] = field(default_factory=dict)
    feedback: FeedbackSummary | None = None
    drift: DriftTest | None = None


class ComparePage:
    """The comparison page."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    @page
    async def show(self, request: Request) -> Response:
        """The chosen versions in columns; rows that differ are marked."""
        viewer = await viewer_of(request)
        name = request.path_params["name"]
        await authorize(request, Resource.MODEL, Action.READ, model=name)
        try:
            versions = await run_in_threadpool(self._sources.registry.list_versions, name)
        except NotFound as error:
            return not_found(viewer, error)
        chosen = _chosen(request.query_params.getlist("v"), versions)
        columns = [await self._column(request, name, v) for v in chosen]
        return render("compare.html", {
            **viewer.context(), "page": "models", "name": name, "columns": columns,
            "all_versions": sorted((v.version for v in versions), reverse=True),
            "params": _rows([c.run.params if c.run else {} for c in columns]),
            "metrics": _rows([c.run.metrics if c.run else {} for c in columns]),
            "gate_names": sorted({g for c in columns for g in c.gates}),
        })

    async def _column(self, request: Request, name: str, info: VersionInfo) -> Column:
        run = await run_in_threadpool(self._sources.runs.summary, info.run_id)
        column = Column(info, run, self._sources.links.run(run))
        gate_results = of(request).access.store.gate_results
        for outcome in await run_in_threadpool(gate_results, name, info.version):
            column.gates[outcome.gate] = outcome  # oldest first: the latest verdict stays
        quality = self._sources.live.quality
        store = await run_in_threadpool(quality.store) if quality is not None else None
        if store is not None:
            summaries = await run_in_threadpool(store.summaries)
            column.feedback = next((s for s in summaries if s.model_name == name
                                    and s.model_version == str(info.version)), None)
            stored = await run_in_threadpool(store.coordination.drift_snapshot, name,
                                             str(info.version))
            if stored is not None:
                column.drift = parse_test(0.0, str(info.version), stored[1])
        return column


def _chosen(asked: list[str], versions: list[VersionInfo]) -> list[VersionInfo]:
    by_number = {v.version: v for v in versions}
    if asked:
        try:
            numbers = list(dict.fromkeys(int(a) for a in asked))[:MAX_VERSIONS]
        except ValueError:
            raise InvalidInput("v must be version numbers", field="v") from None
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise NotFound(f"no version {missing[0]} of this model", field="v")
        return [by_number[n] for n in numbers]
    production = [v for v in versions if v.stage is Stage.PRODUCTION]
    others = [v for v in reversed(versions) if v.stage is not Stage.PRODUCTION]
    return sorted((production + others)[:2], key=lambda v: v.version)


def _rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: each version's value and whether they differ."""
    keys = sorted({k for found in values for k in found})
    return [{"key": k, "values": [found.get(k) for found in values],
             "differs": len({repr(found.get(k)) for found in values}) > 1} for k in keys]
