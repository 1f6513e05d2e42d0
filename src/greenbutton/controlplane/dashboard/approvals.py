"""The approvals queue across models: requests with their gate results, decided from the page.

Approve / reject / override and the propose form ``fetch`` the governance API
(``POST /api/v1/requests/{id}/{decision}``, ``POST /api/v1/models/{m}/versions/{v}/requests``),
so the API's permission checks, four-eyes rule and audit apply as for the CLI.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...governance.access import Caller
from ...governance.permissions import Action, Resource
from ...store.governance_records import STATUSES, RequestRecord
from ..auth import readable
from ..context import of
from .sources import Sources
from .templating import render
from .viewer import can, page, viewer_of

MAX_SHOWN = 200


class ApprovalsPage:
    """``GET /approvals?status=pending`` (default), ``?status=all`` or one status."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    @page
    async def show(self, request: Request) -> Response:
        """Requests the caller may read, newest first, with what the caller may do to each."""
        viewer = await viewer_of(request)
        access = of(request).access
        wanted = request.query_params.get("status", "pending")
        status = wanted if wanted in STATUSES else None
        found = await run_in_threadpool(access.store.list_requests, None, status)
        allowed = await readable(request, sorted({r.model for r in found}))
        shown = [r for r in found if r.model in allowed][:MAX_SHOWN]
        models = await run_in_threadpool(self._sources.registry.list_models)
        visible = await readable(request, [m.name for m in models])
        proposable = [m for m in sorted(visible) if await can(
            request, viewer.caller, Resource.REQUEST, Action.PROPOSE, m)]
        return render("approvals.html", {
            **viewer.context(), "page": "approvals", "requests": shown,
            "status": status or "all", "statuses": STATUSES,
            "can": await self._abilities(request, viewer.caller, shown),
            "four_eyes": await self._four_eyes(request, shown),
            "proposable": proposable,
        })

    async def _abilities(self, request: Request, caller: Caller,
                         shown: list[RequestRecord]) -> dict[str, dict[str, bool]]:
        """model → approve/override, asked once per model."""
        found: dict[str, dict[str, bool]] = {}
        for model in sorted({r.model for r in shown}):
            found[model] = {
                "approve": await can(request, caller, Resource.REQUEST, Action.APPROVE, model),
                "override": await can(request, caller, Resource.REQUEST, Action.OVERRIDE, model),
            }
        return found

    async def _four_eyes(self, request: Request, shown: list[RequestRecord]) -> dict[str, bool]:
        """model → whether its proposer may not approve their own request."""
        approvals = of(request).approvals
        return {m: await run_in_threadpool(approvals.is_four_eyes, m)
                for m in sorted({r.model for r in shown})}
