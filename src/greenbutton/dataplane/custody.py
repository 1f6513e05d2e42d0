"""The supervisor keeps a duplicate of every connection a worker serves, to answer for it.

A worker that keeps a connection sends its descriptor to the supervisor (``SCM_RIGHTS`` over
one Unix datagram socketpair per worker slot) and writes the connection's state into a
shared table: :data:`IDLE` between requests, :data:`IN_REQUEST` from the first byte of a
request, :data:`RESPONDING` once its answer has started. When the worker dies, the kernel
closes only the worker's descriptors: the supervisor still holds the connection, reads the
state the worker left and answers a request that got no byte of its answer with a 503
(:func:`died_response`), closes a half-written answer, and closes an idle connection with a
FIN, so no caller hangs or sees a reset.

While the supervisor holds a duplicate, a worker's close(2) sends no FIN, so the worker also
sends a release message and the supervisor closes its duplicate at once; a release that could
not be sent is found by :meth:`Custodian.sweep` (the entry is free in the table). Each table
entry and each socketpair has one writer at a time (the worker of its slot while it lives,
the supervisor after it died), so nothing is locked.
"""

from __future__ import annotations

import array
import contextlib
import logging
import mmap
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .responses import error_response

logger = logging.getLogger(__name__)

FREE, IDLE, IN_REQUEST, RESPONDING = 0, 1, 2, 3
"""Connection states in the shared table (one byte per entry)."""
NO_ENTRY = -1
"""The entry of a connection the supervisor does not hold (no room, or not sendable)."""
CAPACITY = 16384
"""Table entries per worker slot: connections one worker can have in custody at once."""
SWEEP_INTERVAL_S = 0.5
"""How often the supervisor closes duplicates whose release message was lost."""
LINGER_S = 2.0
"""How long the supervisor reads (and drops) what a client still sends after its 503."""

_KEPT, _RELEASED = b"k", b"r"
_MESSAGE = struct.Struct("=ci")  # kind, entry


class CustodyTable:
    """Connection states of every worker slot, and one socketpair per slot to the supervisor.

    Made by the supervisor before it forks (shared anonymous memory), like
    :class:`~.balance.Slots`. Entries ``slot * capacity`` to ``(slot + 1) * capacity - 1``
    belong to ``slot``.
    """

    def __init__(self, count: int, capacity: int = CAPACITY) -> None:
        self.count = count
        self.capacity = capacity
        self._memory = mmap.mmap(-1, count * capacity)
        self.states = memoryview(self._memory)
        pairs = datagram_pairs(count)
        self._worker_ends = [end for end, _ in pairs]
        self._supervisor_ends = [end for _, end in pairs]

    def entries(self, slot: int) -> range:
        """The entries of ``slot``."""
        return range(slot * self.capacity, (slot + 1) * self.capacity)

    def worker_end(self, slot: int) -> socket.socket:
        """The end the worker in ``slot`` sends its connections and releases on."""
        return self._worker_ends[slot]

    def supervisor_end(self, slot: int) -> socket.socket:
        """The end the supervisor receives ``slot``'s connections and releases on."""
        return self._supervisor_ends[slot]

    def reset(self, slot: int) -> None:
        """Supervisor: the worker in ``slot`` died; every entry is free for its replacement."""
        self.states[slot * self.capacity:(slot + 1) * self.capacity] = bytes(self.capacity)

    def close_supervisor_ends(self) -> None:
        """Close this process's copies of the supervisor's ends (a worker, just forked)."""
        for end in self._supervisor_ends:
            end.close()

    def close(self) -> None:
        """Close the socketpairs and the memory (the supervisor, once every worker exited)."""
        for end in (*self._worker_ends, *self._supervisor_ends):
            end.close()
        self.states.release()
        self._memory.close()


class WorkerCustody:
    """One worker's side: puts its connections in the supervisor's custody and releases them."""

    def __init__(self, table: CustodyTable, slot: int) -> None:
        self.states = table.states
        self._end = table.worker_end(slot)
        self._free = list(reversed(table.entries(slot)))  # popped from the end: lowest first

    def keep(self, fd: int) -> int:
        """Send the supervisor a duplicate of connection ``fd``; its entry, or NO_ENTRY."""
        if not self._free:
            return NO_ENTRY
        entry = self._free.pop()
        self.states[entry] = IDLE  # before the supervisor can see the message (see sweep)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        try:
            self._end.sendmsg([_MESSAGE.pack(_KEPT, entry)], rights, socket.MSG_DONTWAIT)
        except OSError:  # the supervisor is gone or far behind: served as without custody
            self.release(entry, is_held=False)
            return NO_ENTRY
        return entry

    def release(self, entry: int, is_held: bool = True) -> None:
        """The connection of ``entry`` closed here: the supervisor closes its duplicate."""
        self.states[entry] = FREE
        self._free.append(entry)
        if is_held:
            with contextlib.suppress(OSError):  # lost: the sweep finds the entry free
                self._end.send(_MESSAGE.pack(_RELEASED, entry), socket.MSG_DONTWAIT)


class CustodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that writes its connection's state into the table.

    Three one-byte writes per request, no system call: the request's first byte, the start of
    its answer (the app's ``send`` is wrapped), the answer's end. Subclasses call
    :meth:`take_custody` when they keep a connection and :meth:`end_custody` when it is lost.
    """

    custody: ClassVar[WorkerCustody | None] = None
    _entry = NO_ENTRY
    _states: memoryview  # the table, once the connection is in custody
    _unanswered = 0  # requests begun and not answered (more than one when pipelined)

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if self.custody is not None:
            self._served_app = self.app
            self.app = self._serve_marking_answers

    def take_custody(self, transport: Any) -> None:
        """Put the connection in the supervisor's custody (not a TLS one: its state is here)."""
        sock = transport.get_extra_info("socket")
        if self.custody is None or sock is None or transport.get_extra_info("sslcontext"):
            return
        self._states = self.custody.states
        self._entry = self.custody.keep(sock.fileno())

    def end_custody(self) -> None:
        """The connection is closed here: release it, once."""
        if self._entry != NO_ENTRY and self.custody is not None:
            self.custody.release(self._entry)
            self._entry = NO_ENTRY

    def on_message_begin(self) -> None:
        """A request's first byte: IN_REQUEST, unless an earlier answer is being written."""
        super().on_message_begin()
        self._unanswered += 1
        if self._unanswered == 1 and self._entry != NO_ENTRY:
            self._states[self._entry] = IN_REQUEST

    def on_response_complete(self) -> None:
        """An answer is complete: IDLE, or IN_REQUEST if a pipelined request has begun."""
        self._unanswered -= 1
        if self._entry != NO_ENTRY:
            self._states[self._entry] = IN_REQUEST if self._unanswered else IDLE
        super().on_response_complete()

    async def _serve_marking_answers(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_marking(message: Any) -> None:
            if message["type"] == "http.response.start" and self._entry != NO_ENTRY:
                self._states[self._entry] = RESPONDING
            await send(message)

        await self._served_app(scope, receive, send_marking)


@dataclass
class Settled:
    """What the supervisor did with the connections of a worker that died."""

    answered: int = 0  # a request had no byte of its answer: 503
    cut: int = 0  # an answer was half-written: closed
    idle: int = 0  # between requests: closed with a FIN


class Custodian:
    """The supervisor's side: holds the duplicates, settles a dead worker's connections.

    Registers its sockets with ``selector``; each key's data is the callback to run when the
    socket is readable."""

    def __init__(self, table: CustodyTable, selector: selectors.BaseSelector) -> None:
        self.table = table
        self.selector = selector
        self.held: list[dict[int, int]] = [{} for _ in range(table.count)]  # entry -> fd
        self.messages = 0  # received so far
        self._lingering: dict[socket.socket, float] = {}  # answered, until EOF or deadline
        self._swept_at = time.monotonic()
        self._answer = died_response()
        for slot in range(table.count):
            selector.register(table.supervisor_end(slot), selectors.EVENT_READ,
                              partial(self.receive, slot))

    def receive(self, slot: int) -> None:
        """Take the connections and releases ``slot``'s worker has sent."""
        end, held, entries = self.table.supervisor_end(slot), self.held[slot], \
            self.table.entries(slot)
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(end, _MESSAGE.size, 1, _RECV_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            self.messages += 1
            kind, entry = _MESSAGE.unpack(data) if len(data) == _MESSAGE.size else (b"", -1)
            if entry in entries:  # kept again: its release was lost; released: close it
                _close_fd(held.pop(entry, None))
            if kind == _KEPT and entry in entries and fds:
                held[entry] = fds.pop()
            for fd in fds:
                _close_fd(fd)

    def sweep(self) -> None:
        """Close duplicates of entries released without a message, and lingering sockets past
        their deadline (at most every SWEEP_INTERVAL_S)."""
        now = time.monotonic()
        if now - self._swept_at < SWEEP_INTERVAL_S:
            return
        self._swept_at = now
        states = self.table.states
        for held in self.held:
            for entry in [entry for entry in held if states[entry] == FREE]:
                _close_fd(held.pop(entry))
        for sock in [sock for sock, deadline in self._lingering.items() if deadline < now]:
            self._end_linger(sock)

    def settle(self, slot: int) -> Settled:
        """The worker of ``slot`` died: answer or close each connection it held, by state."""
        self.receive(slot)  # what it sent before it died
        settled = Settled()
        states, held = self.table.states, self.held[slot]
        for entry, fd in held.items():
            sock = socket.socket(fileno=fd)
            state = states[entry]
            if state == RESPONDING:
                settled.cut += 1
                sock.close()
            elif state == IN_REQUEST or (state == IDLE and _has_unread(sock)):
                settled.answered += 1
                self._answer_died(sock)
            elif state == IDLE:
                settled.idle += 1
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                sock.close()
            else:  # released, the message lost
                sock.close()
        held.clear()
        self.table.reset(slot)
        return settled

    def held_count(self) -> int:
        """Connections held now."""
        return sum(len(held) for held in self.held)

    def forget(self) -> None:
        """In a worker just forked: close the copies of everything the supervisor holds."""
        for held in self.held:
            for fd in held.values():
                _close_fd(fd)
            held.clear()
        for sock in self._lingering:
            sock.close()
        self._lingering.clear()
        self.table.close_supervisor_ends()

    def close(self) -> None:
        """Close every held connection (the supervisor, once every worker has exited)."""
        for held in self.held:
            for fd in held.values():
                _close_fd(fd)
            held.clear()
        for sock in list(self._lingering):
            self._end_linger(sock)

    def _answer_died(self, sock: socket.socket) -> None:
        # then read what the client still sends: closing with unread bytes would reset the
        # connection, and a reset can destroy the 503 before the client reads it
        try:
            sock.setblocking(False)
            sock.send(self._answer)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering[sock] = time.monotonic() + LINGER_S
        self.selector.register(sock, selectors.EVENT_READ, partial(self._read_lingering, sock))
        self._read_lingering(sock)

    def _read_lingering(self, sock: socket.socket) -> None:
        while True:
            try:
                if not sock.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                break
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        if self._lingering.pop(sock, None) is not None:
            self.selector.unregister(sock)
            sock.close()


def datagram_pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """``count`` connected pairs of non-blocking Unix datagram sockets (one per worker slot)."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
    for pair in pairs:
        for end in pair:
            end.setblocking(False)
    return pairs


def died_response() -> bytes:
    """The 503 a caller gets when the worker serving its request died before answering."""
    response = error_response(
        503, "worker_died",
        "the worker serving this request died before answering; retrying is safe only if "
        "the request is idempotent (predictions are)",
        field=None, request_id=None)
    head = [b"HTTP/1.1 503 Service Unavailable"]
    head += [name + b": " + value for name, value in response.raw_headers]
    head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + bytes(response.body)


def _has_unread(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            socket.close(fd)


_RECV_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_CMSG_CLOEXEC", 0)
