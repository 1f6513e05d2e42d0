"""Leader election: several control-plane replicas serve the API, one runs the reconcile loop.

Usage::

    elector = open_elector(settings)        # PostgreSQL store: advisory lock; else always leader
    lost = await lead(elector, controller.run, stop_event)   # True: leadership was lost

With a PostgreSQL store the leader is whoever holds the session-level advisory lock
``lock_key(target_uri)`` on a dedicated connection. PostgreSQL releases it when that session
ends: at once when the leader's process dies (its socket closes), and after the TCP keepalive
(idle 5 s + 2 × 2 s) when the leader's machine vanishes. The leader checks every
``leader_poll_interval_s`` that it still holds the lock, with a ``leader_timeout_s`` budget;
a failed check stops its reconcile loop before the server can have handed the lock to someone
else (the check fails after a few seconds of silence, the server waits for the keepalive).
Followers try to take the lock every ``leader_poll_interval_s``.

Embedded stores (SQLite, memory) have one control plane: it is always the leader.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..config import Settings
from ..store.engine import normalize_uri

log = logging.getLogger(__name__)

# server-side keepalive of the leader's session: a vanished machine's lock is freed after ~9 s
_KEEPALIVE = {"idle": 5, "interval": 2, "count": 2}


def lock_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of ``name`` (stable across processes and versions)."""
    digest = hashlib.sha256(f"greenbutton.controller:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Elector(Protocol):
    """Who runs the reconcile loop."""

    is_shared: bool
    """Other replicas may take over (so a leaving leader leaves its deployments running)."""

    async def try_acquire(self) -> bool:
        """Become the leader if nobody is; True if this replica is the leader now."""
        ...

    async def is_held(self) -> bool:
        """Whether this replica still is the leader (False when it cannot tell in time)."""
        ...

    async def release(self) -> None:
        """Stop being the leader (or a candidate)."""
        ...


class AlwaysLeader:
    """The one control plane of an embedded (SQLite or memory) store."""

    is_shared = False

    async def try_acquire(self) -> bool:
        return True

    async def is_held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class AdvisoryLockElector:
    """Leadership = holding a PostgreSQL session-level advisory lock on its own connection."""

    is_shared = True

    def __init__(self, uri: str, key: int, *, timeout_s: float = 3.0) -> None:
        url = normalize_uri(uri).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._key = key
        self._timeout_s = timeout_s
        self._connection: Any = None  # psycopg.AsyncConnection, imported when chosen

    async def try_acquire(self) -> bool:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await asyncio.wait_for(self._connect(), self._timeout_s)
            return bool(await self._scalar("SELECT pg_try_advisory_lock(%s)", self._key))
        except Exception as error:  # unreachable database: stay a follower, try again later
            log.warning("leader election: cannot reach PostgreSQL: %s", error)
            await self._close()
            return False

    async def is_held(self) -> bool:
        if self._connection is None or self._connection.closed:
            return False
        try:
            held = await self._scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND ((classid::bigint << 32) | objid::bigint) = %s", self._key)
        except Exception as error:
            log.error("leader election: lock check failed: %s", error)
            await self._close()
            return False
        return bool(held)

    async def release(self) -> None:
        await self._close()  # ending the session releases the lock

    async def _connect(self) -> Any:
        import psycopg

        timeout_ms = int(self._timeout_s * 1000)
        server_keepalive = " ".join(f"-c tcp_keepalives_{k}={v}" for k, v in _KEEPALIVE.items())
        return await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, int(self._timeout_s)),
            application_name=f"greenbutton-controller {socket.gethostname()} {os.getpid()}",
            keepalives=1, keepalives_idle=_KEEPALIVE["idle"],
            keepalives_interval=_KEEPALIVE["interval"], keepalives_count=_KEEPALIVE["count"],
            tcp_user_timeout=timeout_ms,
            options=f"{server_keepalive} -c statement_timeout={timeout_ms}")

    async def _scalar(self, query: str, *params: Any) -> Any:
        async def run() -> Any:
            cursor = await self._connection.execute(query, params)
            row = await cursor.fetchone()
            return row[0] if row else None

        return await asyncio.wait_for(run(), self._timeout_s)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            try:
                await asyncio.wait_for(connection.close(), self._timeout_s)
            except Exception:  # closing a broken connection: the server ends the session
                pass


def open_elector(settings: Settings) -> Elector:
    """Advisory-lock election for a PostgreSQL store; always leader otherwise."""
    if settings.store.uri.partition(":")[0].startswith("postgresql"):
        return AdvisoryLockElector(settings.store.uri, lock_key(settings.controller.target_uri),
                                   timeout_s=settings.controller.leader_timeout_s)
    return AlwaysLeader()


class Leadership:
    """Whether this replica leads, as shown by ``/api/v1/health``."""

    def __init__(self) -> None:
        self.is_leader = False
        self.is_lost = False


async def lead(
    elector: Elector,
    work: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    *,
    poll_interval_s: float = 1.0,
    leadership: Leadership | None = None,
    on_lost: Callable[[], None] | None = None,
    on_tick: Callable[[bool], None] | None = None,
) -> bool:
    """Wait to be elected, then run ``work(inner_stop)`` until ``stop`` or lost leadership.

    Returns True when leadership was lost (after ``work`` has stopped and ``on_lost`` ran): the
    replica must not reconcile again with what it believed, so the caller should exit.
    ``on_tick(is_leader)`` runs every ``poll_interval_s`` (e.g. ``SharedRoutes.tick``).
    """
    state = leadership or Leadership()
    tick = on_tick or (lambda is_leader: None)
    try:
        while not await elector.try_acquire():
            tick(False)
            if await _wait(stop, poll_interval_s):
                return False
        state.is_leader = True
        log.info("elected leader: this replica runs the reconcile loop")
        inner = asyncio.Event()
        task = asyncio.create_task(work(inner), name="reconcile-loop")
        while not task.done():
            if await _wait(stop, poll_interval_s, task) or task.done():
                break
            if not await elector.is_held():
                state.is_lost = True
                break
            tick(True)
        inner.set()
        await task
        if state.is_lost:
            log.error("leadership lost: reconcile loop stopped; another replica takes over")
            if on_lost is not None:
                on_lost()
        return state.is_lost
    finally:
        state.is_leader = False
        await elector.release()


async def _wait(stop: asyncio.Event, timeout_s: float, *also: asyncio.Task[None]) -> bool:
    """Sleep up to ``timeout_s``; True if ``stop`` is set."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((stopping, *also), timeout=timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return stop.is_set()


def terminate_this_process() -> None:
    """``on_lost`` for ``greenbutton up``: shut down gracefully (uvicorn handles SIGTERM); a
    supervisor (Kubernetes, systemd) starts it again as a follower."""
    os.kill(os.getpid(), signal.SIGTERM)
