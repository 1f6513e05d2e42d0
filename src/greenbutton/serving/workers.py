"""Several worker processes on one listening socket, forked and kept alive by a supervisor.

The supervisor forks ``workers`` children, each running the serving app (so each loads the
model once) and accepting on the shared socket, the way gunicorn's arbiter does. The kernel
gives a new connection to whichever child accepts first, so each child hands a connection it
accepted to a less loaded sibling when it holds more than its share (:mod:`.balance`; the
supervisor makes the shared counters and socketpairs, one slot per child, before forking). A
child that dies is replaced in its slot; the kernel resets its open connections, so callers
(and the gateway, which answers 503) never hang on it. A child that could not load the model
stops the whole server. On SIGTERM/SIGINT the supervisor closes its copy of the socket, passes
the signal on, waits for the children to drain and returns 0.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from .balance import Slots, WorkerBalancer

logger = logging.getLogger(__name__)

RESPAWN_BACKOFF_S = 0.5
"""Wait before replacing a worker that died within ``MIN_LIFETIME_S`` of starting."""
MIN_LIFETIME_S = 1.0
EXIT_LOAD_FAILED = 3
"""Exit code of a worker whose model did not load (the supervisor then gives up)."""


class Supervisor:
    """Forks ``workers`` copies of ``serve`` (a function of the child's balancer returning an
    exit code) and keeps them."""

    def __init__(self, serve: Callable[[WorkerBalancer], int], sock: socket.socket, workers: int,
                 shutdown_timeout_s: float) -> None:
        self.serve = serve
        self.sock = sock
        self.workers = workers
        self.shutdown_timeout_s = shutdown_timeout_s
        self.children: dict[int, float] = {}  # pid -> started (monotonic)
        self.slot_of: dict[int, int] = {}  # pid -> its slot in self.slots
        self.slots = Slots(workers)
        self.is_stopping = False
        self.has_failed = False

    def run(self) -> int:
        """Supervise until stopped; 0 after a graceful stop, else the failing worker's code."""
        originals = {sig: signal.signal(sig, self._on_signal)
                     for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.workers):
                self._spawn(slot)
            return self._reap()
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
            self.slots.close()

    def _spawn(self, slot: int) -> None:
        self.slots.reset(slot)
        pid = os.fork()
        if pid == 0:  # the child: default signal handling until uvicorn installs its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _drain_when_orphaned()
            code = 1
            try:
                code = self.serve(WorkerBalancer(self.slots, slot))
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        self.children[pid] = time.monotonic()
        self.slot_of[pid] = slot
        logger.info("worker %d started", pid)

    def _reap(self) -> int:
        code = 0
        deadline: float | None = None
        while self.children:
            if self.is_stopping and deadline is None:
                deadline = time.monotonic() + self.shutdown_timeout_s + 5
            if deadline is not None and time.monotonic() > deadline:
                self._signal_all(signal.SIGKILL)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            started = self.children.pop(pid, None)
            if started is None:
                continue
            slot = self.slot_of.pop(pid)
            self.slots.reset(slot)
            exit_code = os.waitstatus_to_exitcode(status)
            if self.is_stopping:
                continue
            if exit_code == EXIT_LOAD_FAILED:
                logger.error("worker %d could not load the model; stopping", pid)
                code = exit_code
                self._stop()
                continue
            logger.warning("worker %d died (exit %d); replacing it", pid, exit_code)
            if time.monotonic() - started < MIN_LIFETIME_S:
                time.sleep(RESPAWN_BACKOFF_S)
            self._spawn(slot)
        return code

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.is_stopping:
            return
        self.is_stopping = True
        self.sock.close()  # the children hold their own copies until they drain
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                self.children.pop(pid, None)


def _drain_when_orphaned() -> None:
    # a supervisor killed with SIGKILL cannot pass SIGTERM on: ask Linux to send it instead
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1
