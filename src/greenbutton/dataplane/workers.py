"""Several worker processes on one listening socket, forked and kept alive by a supervisor.

The supervisor forks ``workers`` children, each running the serving app (so each loads the
model once) and accepting on the shared socket, the way gunicorn's arbiter does. The kernel
gives a new connection to whichever child accepts first, so each child hands a connection it
accepted to a less loaded sibling when it holds more than its share (:mod:`.balance`; the
supervisor makes the shared counters and socketpairs, one slot per child, before forking).
Every connection a child keeps is also held by the supervisor (:mod:`.custody`), so when a
child dies (killed, crashed in model code, out of memory) its callers are not reset: a request
that got no byte of its answer gets a 503 with ``Retry-After``, an idle keep-alive connection
is closed, and the child is replaced in its slot (as is a child stuck in a model call,
which exits by itself, or is killed once past the deadline its watchdog renews:
:mod:`.watchdog`). The supervisor waits on the custody sockets
and a pidfd per child with one selector. A child that could not load the model stops the
whole server. On SIGTERM/SIGINT the supervisor closes its copy of the socket, passes the
signal on, waits for the children to drain and returns 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from types import FrameType

from .balance import Slots, WorkerBalancer
from .custody import SWEEP_INTERVAL_S, Custodian, CustodyTable, WorkerCustody
from .watchdog import EXIT_STUCK

logger = logging.getLogger(__name__)

RESPAWN_BACKOFF_S = 0.5
"""Wait before replacing a worker that died within ``MIN_LIFETIME_S`` of starting."""
MIN_LIFETIME_S = 1.0
HAS_PIDFD = hasattr(os, "pidfd_open")
"""Linux ≥ 5.3: a child's exit wakes the supervisor's selector; elsewhere it polls."""
POLL_S = 0.05
"""Without pidfds, how often the supervisor looks for children that exited."""
COALESCE_S = 0.005
"""After taking custody messages, the supervisor waits this long before it looks again: under
many short connections it wakes ~200 times a second instead of twice per connection, and a
release (so the FIN of a connection the server closes) waits at most this long."""
EXIT_LOAD_FAILED = 3
"""Exit code of a worker whose model did not load (the supervisor then gives up)."""


class Supervisor:
    """Forks ``workers`` copies of ``serve`` (a function of the child's balancer returning an
    exit code) and keeps them."""

    def __init__(self, serve: Callable[[WorkerBalancer], int], sock: socket.socket, workers: int,
                 shutdown_timeout_s: float, on_exit: Callable[[int], None] | None = None) -> None:
        self.serve = serve
        self.on_exit = on_exit
        """Called with the pid of each child that exited (once reaped)."""
        self.sock = sock
        self.workers = workers
        self.shutdown_timeout_s = shutdown_timeout_s
        self.children: dict[int, float] = {}  # pid -> started (monotonic)
        self.slot_of: dict[int, int] = {}  # pid -> its slot in self.slots
        self.pidfds: dict[int, int] = {}  # pid -> its pidfd, readable once it exited
        self.respawns: list[tuple[float, int]] = []  # (when, slot)
        self.slots = Slots(workers)
        self.table = CustodyTable(workers)
        self.selector = selectors.DefaultSelector()
        self.custodian = Custodian(self.table, self.selector)
        self.is_stopping = False
        self.code = 0

    def run(self) -> int:
        """Supervise until stopped; 0 after a graceful stop, else the failing worker's code."""
        raise_open_files_limit()  # one descriptor per connection served, held here too
        originals = {sig: signal.signal(sig, self._on_signal)
                     for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.workers):
                self._spawn(slot)
            self._supervise()
            return self.code
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
            self.custodian.close()
            self.selector.close()
            self.table.close()
            self.slots.close()

    def _spawn(self, slot: int) -> None:
        self.slots.reset(slot)
        pid = os.fork()
        if pid == 0:  # the child: default signal handling until uvicorn installs its own
            self._forget()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _drain_when_orphaned()
            code = 1
            try:
                code = self.serve(WorkerBalancer(self.slots, slot, WorkerCustody(self.table, slot)))
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        self.children[pid] = time.monotonic()
        self.slot_of[pid] = slot
        if HAS_PIDFD:
            self.pidfds[pid] = os.pidfd_open(pid)
            self.selector.register(self.pidfds[pid], selectors.EVENT_READ,
                                   partial(self._on_exit, pid))
        logger.info("worker %d started", pid)

    def _forget(self) -> None:
        # first thing in a new child: its copies of the connections the supervisor holds
        # would keep them open (no FIN when the worker serving one closes it) while it lives
        self.custodian.forget()
        for pidfd in self.pidfds.values():
            os.close(pidfd)
        self.selector.close()

    def _supervise(self) -> None:
        deadline: float | None = None
        while self.children or self.respawns:
            if self.is_stopping and deadline is None:
                deadline = time.monotonic() + self.shutdown_timeout_s + 5
            if deadline is not None and time.monotonic() > deadline:
                self._signal_all(signal.SIGKILL)
            received = self.custodian.messages
            for key, _ in self.selector.select(self._wait_s()):
                key.data()
            if self.custodian.messages != received:
                time.sleep(COALESCE_S)  # let more queue up: one wake-up takes them all
            if not HAS_PIDFD:
                self._reap_exited()
            if not self.is_stopping:
                self._kill_overdue()
            self.custodian.sweep()
            self._respawn_due()

    def _kill_overdue(self) -> None:
        # a worker past the deadline its watchdog renews runs no Python at all (a call holds
        # the interpreter lock): kill it; its exit is then handled as any death
        now = time.monotonic_ns()
        for pid, slot in self.slot_of.items():
            deadline = int(self.slots.deadline[slot])
            if deadline and now > deadline:
                self.slots.deadline[slot] = 0  # once
                logger.error("worker %d missed its watchdog's deadline by %.1f s: a model call "
                             "holds the interpreter lock; killing it", pid,
                             (now - deadline) / 1e9)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _wait_s(self) -> float:
        waits = [when - time.monotonic() for when, _ in self.respawns]
        return max(0.0, min([SWEEP_INTERVAL_S if HAS_PIDFD else POLL_S, *waits]))

    def _on_exit(self, pid: int) -> None:
        # its pidfd turned readable: it exited
        self.selector.unregister(self.pidfds[pid])
        os.close(self.pidfds.pop(pid))
        _, status = os.waitpid(pid, 0)
        self._exited(pid, status)

    def _reap_exited(self) -> None:
        # without pidfds: look for exited children every POLL_S
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            if pid in self.children:
                self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        started = self.children.pop(pid)
        slot = self.slot_of.pop(pid)
        if self.on_exit is not None:
            try:
                self.on_exit(pid)
            except Exception:
                logger.exception("cleaning up after worker %d failed", pid)
        settled = self.custodian.settle(slot)
        self.slots.reset(slot)
        exit_code = os.waitstatus_to_exitcode(status)
        how = f"signal {-exit_code}" if exit_code < 0 else f"exit {exit_code}"
        if self.is_stopping:
            if settled.answered or settled.cut:
                logger.warning("worker %d stopped (%s); %d requests answered 503, %d answers "
                               "cut short", pid, how, settled.answered, settled.cut)
            return
        if exit_code == EXIT_LOAD_FAILED:
            logger.error("worker %d could not load the model; stopping", pid)
            self.code = exit_code
            self._stop()
            return
        what = "was stuck in a model call" if exit_code == EXIT_STUCK else "died"
        logger.warning("worker %d %s (%s); %d requests answered 503, %d answers cut short, "
                       "%d idle connections closed; replacing it",
                       pid, what, how, settled.answered, settled.cut, settled.idle)
        is_early = time.monotonic() - started < MIN_LIFETIME_S
        self.respawns.append((time.monotonic() + (RESPAWN_BACKOFF_S if is_early else 0), slot))

    def _respawn_due(self) -> None:
        if self.is_stopping:
            self.respawns.clear()
        now = time.monotonic()
        for when, slot in [due for due in self.respawns if due[0] <= now]:
            self.respawns.remove((when, slot))
            self._spawn(slot)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.is_stopping:
            return
        self.is_stopping = True
        self.sock.close()  # the children hold their own copies until they drain
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in self.children:  # (a child that exited is a zombie until _on_exit reaps it)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def raise_open_files_limit() -> None:
    """Raise this process's soft limit of open descriptors to its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # (an unlimited hard limit, say)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _drain_when_orphaned() -> None:
    # a supervisor killed with SIGKILL cannot pass SIGTERM on: ask Linux to send it instead
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1
