"""Leader election on a real PostgreSQL: one leader, takeover when its session ends, a lost
leader stops reconciling; migrations by several processes at once run once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg
import pytest

from greenbutton.config import Settings
from greenbutton.controller.leader import (
    AdvisoryLockElector,
    AlwaysLeader,
    Leadership,
    lead,
    lock_key,
    open_elector,
)
from greenbutton.store.migrate import current_revision, head_revision


def _elector(uri: str, name: str = "local://") -> AdvisoryLockElector:
    return AdvisoryLockElector(uri, lock_key(name), timeout_s=2.0)


async def test_one_leader_then_takeover_when_it_releases(fresh_pg: str) -> None:
    first, second = _elector(fresh_pg), _elector(fresh_pg)
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.is_held() and not await second.is_held()
        other = _elector(fresh_pg, "kubernetes:///ml")  # another target: its own leader
        assert await other.try_acquire()
        await other.release()
        await first.release()
        for _ in range(50):  # the server ends the released session a moment later
            if await second.try_acquire():
                break
            await asyncio.sleep(0.05)
        assert await second.is_held()
    finally:
        await first.release()
        await second.release()


async def test_lost_session_stops_the_loop_and_reports_loss(fresh_pg: str) -> None:
    elector, rival = _elector(fresh_pg), _elector(fresh_pg)
    ran, lost_calls = asyncio.Event(), []
    state = Leadership()

    async def work(stop: asyncio.Event) -> None:
        ran.set()
        await stop.wait()

    task = asyncio.create_task(lead(elector, work, asyncio.Event(), poll_interval_s=0.1,
                                    leadership=state, on_lost=lambda: lost_calls.append(1)))
    await asyncio.wait_for(ran.wait(), 5)
    assert state.is_leader
    with psycopg.connect(fresh_pg, autocommit=True) as admin:  # the leader's session dies
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE application_name LIKE 'greenbutton-controller%%'"
                      " AND datname = current_database()")
    assert await asyncio.wait_for(task, 5) is True
    assert lost_calls == [1] and not state.is_leader
    assert await rival.try_acquire()
    await rival.release()


async def test_follower_waits_and_stops_without_leading(fresh_pg: str) -> None:
    holder, follower = _elector(fresh_pg), _elector(fresh_pg)
    assert await holder.try_acquire()
    stop = asyncio.Event()

    async def work(inner: asyncio.Event) -> None:
        raise AssertionError("a follower must not reconcile")

    task = asyncio.create_task(lead(follower, work, stop, poll_interval_s=0.05))
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(task, 5) is False
    await holder.release()


def test_embedded_store_is_always_leader(settings: Settings) -> None:
    assert isinstance(open_elector(settings), AlwaysLeader)
    settings.store.uri = "postgresql://u@127.0.0.1/db"
    assert isinstance(open_elector(settings), AdvisoryLockElector)


def test_replicas_starting_at_once_migrate_once(fresh_pg: str) -> None:
    code = "import sys; from greenbutton.store.migrate import upgrade; print(upgrade(sys.argv[1]))"
    processes = [subprocess.Popen([sys.executable, "-c", code, fresh_pg], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(4)]
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {head_revision()}
    assert current_revision(fresh_pg) == head_revision()


@pytest.fixture
def settings(tmp_path):  # type: ignore[no-untyped-def]
    return Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]
