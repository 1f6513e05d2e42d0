"""Audited writes racing each other, across processes (replicas, CLI, control plane) and
across the threads of one control plane: none answers 500, every acknowledged write is in
the chain, a lost race is a 409 naming the winner."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from pathlib import Path

import httpx
import pytest

from greenbutton.governance.access import Access
from greenbutton.governance.audit import verify_chain
from greenbutton.registry import Stage
from greenbutton.store.governance_records import AuditEvent
from greenbutton.store.governance_sql import open_governance_store
from greenbutton.store.sql import SqlStore
from postgres_server import new_database

from .conftest import World

PROCESSES, WRITES = 8, 100


@pytest.fixture
def lifecycle_store(both_backends: SqlStore) -> SqlStore:
    """Every test here on SQLite and on PostgreSQL."""
    return both_backends


def write_many(uri: str, secret: str, worker: int) -> dict[str, int]:
    """One process's share: token creations, grants and their removal, and entries that
    describe something stored elsewhere (a token's use), all audited."""
    store = open_governance_store(uri, migrate=False)
    access = Access(store)
    admin = access.authenticate(secret)
    outcomes: Counter[str] = Counter()
    for i in range(WRITES):
        try:
            if i % 4 == 0:
                access.issue_token(admin, "admin", f"w{worker}-{i}")
            elif i % 4 == 3:
                store.append_audit([AuditEvent("admin", "token.use", f"w{worker}-{i}")])
            else:
                access.change_grant(admin, "admin", f"m{worker}", "invoke",
                                    is_granted=i % 4 == 1)
            outcomes["ok"] += 1
        except Exception as error:  # counted: the test's point is that there are none
            outcomes[type(error).__name__] += 1
    store.close()
    return dict(outcomes)


@pytest.fixture(params=["sqlite", "postgres"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated store on each backend."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'gb.db'}"
    else:
        uri = new_database(request.getfixturevalue("postgres_uri"), "race")
    open_governance_store(uri).close()
    return uri


@pytest.mark.slow
def test_processes_writing_at_once_all_succeed_and_chain_stays_whole(store_uri: str) -> None:
    store = open_governance_store(store_uri)
    issued = Access(store).bootstrap_admin()
    assert issued is not None
    before = len(store.audit_entries())
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.starmap(write_many, [(store_uri, issued.secret, w)
                                            for w in range(PROCESSES)])
    totals = sum((Counter(r) for r in results), Counter())
    assert totals == {"ok": PROCESSES * WRITES}, totals
    report = verify_chain(store)
    assert report.is_intact and report.checked == before + PROCESSES * WRITES
    store.close()


async def test_two_approvers_racing_one_wins_the_other_gets_409(
        world: World, api: httpx.AsyncClient) -> None:
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION)
    approvers = ("admin", "maintainer")
    answers = await asyncio.gather(*(
        api.post(f"/api/v1/requests/{request.id}/approve", json={},
                 headers={"Authorization": f"Bearer {world.secrets[who]}"})
        for who in approvers))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409).json()["error"]["message"]
    winner = next(who for who, a in zip(approvers, answers, strict=True) if a.status_code == 200)
    assert winner in loser
    assert verify_chain(world.access.store).is_intact


async def test_refused_writes_do_not_make_allowed_writes_fail(
        world: World, api: httpx.AsyncClient) -> None:
    def as_(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {world.secrets[who]}"}

    refused = [api.post("/api/v1/tokens", json={"principal": "viewer"}, headers=as_("viewer"))
               for _ in range(40)]
    allowed = [api.post("/api/v1/tokens", json={"principal": "viewer"}, headers=as_("admin"))
               for _ in range(40)]
    answers = await asyncio.gather(*refused, *allowed)
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {403: 40, 201: 40}, statuses
    assert verify_chain(world.access.store).is_intact
