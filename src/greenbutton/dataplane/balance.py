"""Connection balancing between the worker processes that share one listening socket.

Whichever worker wakes first accepts a new connection, so a client that opens its few
keep-alive connections at once can find them all in one worker. Before anything is read from
an accepted connection, a worker that holds :data:`SLACK` or more connections above the least
loaded live sibling passes the socket to that sibling over a Unix datagram socketpair
(``SCM_RIGHTS``) and closes its own descriptor. The connection itself is untouched: the
kernel ends a TCP connection only when its last descriptor is closed, the client sees no FIN
and bytes it already sent wait in the socket for the receiver. A received connection is
always kept, so a connection moves at most once.

The supervisor makes the :class:`Slots` before forking (shared memory and one socketpair per
worker slot); a replacement worker takes the slot of the one it replaces. Every counter has a
single writer, so no lock is shared with processes that may be killed at any moment.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import mmap
import socket
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .custody import CustodyProtocol, WorkerCustody, datagram_pairs

logger = logging.getLogger(__name__)

SLACK = 2
"""A worker hands a new connection on when it holds this many more than the least loaded one.

Below it connections stay where the kernel put them, so balanced workers pay nothing; at 2,
two workers never differ by more than 2 connections opened (8 at once split 4/4 or 5/3)."""
_WORD = 8  # bytes per shared counter (int64)


def handoff_target(loads: Sequence[int], alive: Sequence[bool], me: int,
                   slack: int = SLACK) -> int | None:
    """The slot to hand a new connection of slot ``me`` to, or None to keep it.

    The least loaded live slot other than ``me`` (the lowest index among equals), if ``me``
    holds at least ``slack`` more connections than it.
    """
    target: int | None = None
    for slot, (load, is_alive) in enumerate(zip(loads, alive, strict=True)):
        if slot != me and is_alive and (target is None or load < loads[target]):
            target = slot
    if target is None or loads[me] < loads[target] + slack:
        return None
    return target


class Slots:
    """Per worker slot: open connections, liveness, a deadline, and an inbox for handed-on
    connections.

    Made by the supervisor before it forks; the memory is a shared anonymous mapping, so every
    worker sees the same counters. ``opened[i]`` and ``taken[i]`` are written by worker ``i``
    only, ``sent[i, j]`` (connections ``i`` passed to ``j``) by ``i`` only, ``alive[i]`` by
    ``i`` (set once serving, cleared on drain) and by the supervisor (cleared on death). A
    slot's load counts connections on their way to it: ``opened + sent to it - taken``.
    ``deadline[i]`` (monotonic nanoseconds, 0: none) is pushed forward by worker ``i``'s
    watchdog at every check; a worker still past its deadline cannot run Python at all, and
    the supervisor kills it (:meth:`Supervisor._kill_overdue`).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._memory = mmap.mmap(-1, _WORD * (4 * count + count * count))
        words = np.frombuffer(self._memory, dtype=np.int64)
        self.opened = words[:count]
        self.taken = words[count:2 * count]
        self.alive = words[2 * count:3 * count]
        self.deadline = words[3 * count:4 * count]
        self.sent = words[4 * count:].reshape(count, count)
        pairs = datagram_pairs(count)
        self._outboxes = [outbox for outbox, _ in pairs]
        self._inboxes = [inbox for _, inbox in pairs]

    def loads(self) -> list[int]:
        """Connections each slot holds or has on the way to it."""
        loads: list[int] = (self.opened + self.sent.sum(axis=0) - self.taken).tolist()
        return loads

    def target(self, me: int) -> int | None:
        """Where slot ``me`` should hand its new connection, or None (see handoff_target)."""
        return handoff_target(self.loads(), (self.alive != 0).tolist(), me)

    def outbox(self, slot: int) -> socket.socket:
        """The end to send connections for ``slot`` to."""
        return self._outboxes[slot]

    def inbox(self, slot: int) -> socket.socket:
        """The end ``slot`` receives its handed-on connections from."""
        return self._inboxes[slot]

    def reset(self, slot: int) -> None:
        """Supervisor: the worker in ``slot`` died (or is about to start): nothing open, not
        live. Connections still queued in its inbox stay counted; its replacement takes them."""
        self.alive[slot] = 0
        self.opened[slot] = 0
        self.deadline[slot] = 0

    def close(self) -> None:
        """Close the socketpairs (the supervisor, once every worker has exited)."""
        for end in (*self._outboxes, *self._inboxes):
            end.close()


class BalancedProtocol(CustodyProtocol):
    """uvicorn's httptools protocol that may hand its connection to a sibling worker first.

    Subclassed per worker by :meth:`WorkerBalancer.protocol_class`, which sets ``balancer``
    and ``custody``: a connection kept here is put in the supervisor's custody.
    """

    balancer: ClassVar[WorkerBalancer]
    _is_counted = False
    _is_handed_on = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Hand the connection on (closing only this process's descriptor) or serve it.

        uvloop starts reading only after this returns, and not at all once the transport is
        closing, so nothing has been read from a connection that is handed on."""
        if self.balancer.hand_on(transport):
            self._is_handed_on = True
            transport.close()  # uv_close: close(2) of this descriptor, no shutdown(2)
            return
        self.balancer.opened()
        self._is_counted = True
        self.take_custody(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Count the connection closed; a handed-on one was never this worker's."""
        if self._is_handed_on:
            return
        self.uncount()
        self.end_custody()
        super().connection_lost(exc)

    def uncount(self) -> None:
        """Take this connection off the worker's count, once."""
        if self._is_counted:
            self._is_counted = False
            self.balancer.closed()


class ReceivedProtocol(BalancedProtocol):
    """A connection a sibling handed on: always served here, counted from its arrival."""

    _is_counted = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Serve it; if this worker is already draining, close it when idle for keep-alive."""
        self.take_custody(transport)
        HttpToolsProtocol.connection_made(self, transport)
        if self.balancer.is_draining:  # arrived after uvicorn asked its connections to close
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        """As uvicorn, but during a drain the request in progress is the last one."""
        super().data_received(data)
        if self.balancer.is_draining and self.cycle is not None:
            self.shutdown()


class WorkerBalancer:
    """One worker's side of the balancing: its slot in ``slots``.

    :meth:`protocol_class` goes to ``uvicorn.Config(http=...)``; :meth:`start` (after uvicorn
    started) takes connections from the inbox and marks the slot live; :meth:`drain` (on
    SIGTERM) takes it out of the choice.
    """

    def __init__(self, slots: Slots, slot: int, custody: WorkerCustody | None = None) -> None:
        self.slots = slots
        self.slot = slot
        self.custody = custody
        self.is_draining = False
        self._inbox = slots.inbox(slot)
        self._adopting: set[asyncio.Task[Any]] = set()
        self._received: type[ReceivedProtocol] | None = None
        self._server: uvicorn.Server | None = None

    def protocol_class(self) -> type[BalancedProtocol]:
        """uvicorn's httptools protocol, balancing through this worker's slot."""
        return type("WorkerProtocol", (BalancedProtocol,),
                    {"balancer": self, "custody": self.custody})

    def start(self, server: uvicorn.Server) -> None:
        """Adopt connections sent to this slot into ``server`` (started) and mark it live."""
        self._server = server
        self._received = type("ReceivedWorkerProtocol", (ReceivedProtocol,),
                              {"balancer": self, "custody": self.custody})
        asyncio.get_running_loop().add_reader(self._inbox.fileno(), self._on_inbox)
        self.slots.alive[self.slot] = 1

    def promise(self, within_s: float) -> None:
        """Tell the supervisor to kill this worker unless it promises again within
        ``within_s`` (its watchdog calls this at every check)."""
        self.slots.deadline[self.slot] = time.monotonic_ns() + int(within_s * 1e9)

    def drain(self) -> None:
        """Receive no more connections from siblings (those on their way are still served)."""
        self.is_draining = True
        self.slots.alive[self.slot] = 0

    def opened(self) -> None:
        """A connection this worker accepted stays here."""
        self.slots.opened[self.slot] += 1

    def closed(self) -> None:
        """A connection this worker served has closed."""
        self.slots.opened[self.slot] -= 1

    def hand_on(self, transport: asyncio.BaseTransport) -> bool:
        """Send the connection to a less loaded sibling if it should go; True if sent."""
        target = self.slots.target(self.slot)
        if target is None:
            return False
        sock = transport.get_extra_info("socket")
        if sock is None or transport.get_extra_info("sslcontext") is not None:
            return False  # (TLS state lives in this process: such a connection stays)
        self.slots.sent[self.slot, target] += 1  # before the receiver can take it
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [sock.fileno()]))]
        try:  # (socket.send_fds would drop the flags)
            self.slots.outbox(target).sendmsg([b"c"], rights, socket.MSG_DONTWAIT)
        except OSError:  # its inbox is full (a stuck or dead worker): keep the connection
            self.slots.sent[self.slot, target] -= 1
            return False
        return True

    def _on_inbox(self) -> None:
        while True:
            try:
                _, ancillary, _, _ = self._inbox.recvmsg(1, _RIGHTS_SPACE, _RECV_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            for fd in received_fds(ancillary):
                self._adopt(fd)

    def _adopt(self, fd: int) -> None:
        self.slots.taken[self.slot] += 1  # taken first: a momentary under-count is harmless
        self.slots.opened[self.slot] += 1
        assert self._server is not None and self._received is not None
        server, received = self._server, self._received
        protocol = received(config=server.config, server_state=server.server_state,
                            app_state=server.lifespan.state)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            logger.exception("could not adopt a connection handed on by a sibling worker")
            protocol.uncount()
            with contextlib.suppress(OSError):
                socket.close(fd)
            return
        task = asyncio.get_running_loop().create_task(self._connect(sock, protocol))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _connect(self, sock: socket.socket, protocol: ReceivedProtocol) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
        except Exception:
            logger.exception("could not serve a connection handed on by a sibling worker")
            protocol.uncount()
            sock.close()


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in ``recvmsg`` ancillary data."""
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return fds.tolist()


_RIGHTS_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)  # one descriptor per message
_RECV_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_CMSG_CLOEXEC", 0)
