"""The audit log page: entries newest first, filtered by actor, action and target."""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...governance.audit import verify_chain
from ...governance.permissions import Action, Resource
from ...store.governance_records import AuditEntry
from ..auth import authorize
from ..context import of
from .templating import render
from .viewer import page, viewer_of

MAX_SCANNED = 10_000
"""Entries read per page view (the newest ones); older ones: the API's ``?after=`` paging."""
MAX_SHOWN = 500
FILTERS = ("actor", "action", "target")


class AuditPage:
    """``GET /audit?actor=&action=&target=``: needs the audit ``read`` permission."""

    @page
    async def show(self, request: Request) -> Response:
        """The filtered log and whether its hash chain is intact."""
        viewer = await viewer_of(request)
        await authorize(request, Resource.AUDIT, Action.READ)
        access = of(request).access
        wanted = {k: request.query_params.get(k, "").strip()[:200] for k in FILTERS}
        entries = await run_in_threadpool(_newest, access.store.audit_entries)
        matching = [e for e in entries if _matches(e, wanted)]
        report = await run_in_threadpool(verify_chain, access.store)
        return render("audit.html", {
            **viewer.context(), "page": "audit", "filters": wanted,
            "entries": matching[:MAX_SHOWN], "matching": len(matching),
            "scanned": len(entries), "chain": report,
            "actions": sorted({e.action for e in entries}),
        })


def _newest(read: Callable[..., list[AuditEntry]]) -> list[AuditEntry]:
    """The newest ``MAX_SCANNED`` entries, newest first (the store reads oldest first)."""
    found: list[AuditEntry] = []
    after = 0
    while True:
        batch = read(after_seq=after, limit=MAX_SCANNED)
        if not batch:
            break
        found = (found + batch)[-MAX_SCANNED:]
        after = batch[-1].seq
        if len(batch) < MAX_SCANNED:
            break
    return list(reversed(found))


def _matches(entry: AuditEntry, wanted: dict[str, str]) -> bool:
    if wanted["actor"] and entry.actor != wanted["actor"]:
        return False
    if wanted["action"] and entry.action != wanted["action"]:
        return False
    return not wanted["target"] or wanted["target"].lower() in entry.target.lower()
