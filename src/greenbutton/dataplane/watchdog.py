"""Stuck model calls: found from a thread of their own, reported with their stack.

Python cannot stop a thread. A prediction (or explanation) that outlives its timeout gets
its caller a 504, but its call goes on in the background and holds a thread (and often a
core) of the worker; a fast model's call runs on the request loop itself (see
:data:`~greenbutton.dataplane.core.INLINE_BUDGET_S`), where a call that never returns
blocks every request of the worker and no 504 can be sent. The only way to get that worker
back is a new process, so the :class:`Watchdog` declares a worker stuck when

- a call on the request loop has run longer than ``request_timeout_s``, or
- a call in a thread has run longer than ``stuck_call_s`` (default: twice the timeout),

logs where the call is (its thread's stack: the line of model code that hangs) and hands
it to ``on_stuck``; the serving process then exits with :data:`EXIT_STUCK` (gracefully
when the loop still turns), and its supervisor (or the controller, or Kubernetes) starts a
fresh one. Meanwhile ``greenbutton_model_calls_overrunning`` counts the calls running past
the request timeout.

A call can also hold the interpreter lock for good (C code that never releases it, such as
a regular expression backtracking without end): then no thread of the worker runs, the
watchdog included. A forked worker's watchdog therefore renews a deadline in shared memory
at every check (``stuck_call_s`` plus :data:`DEADLINE_SLACK_S` ahead), and the supervisor
kills a worker past it, which it then replaces as it does any dead one.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

logger = logging.getLogger(__name__)

EXIT_STUCK = 4
"""Exit code of a serving process that left because a model call got stuck."""
MAX_CHECK_INTERVAL_S = 1.0
"""The watchdog looks at least this often (more often for short request timeouts)."""
DEADLINE_SLACK_S = 5.0
"""How far beyond ``stuck_call_s`` a forked worker's deadline lies (see the module doc)."""


@dataclass(frozen=True)
class StuckCall:
    """A call the watchdog gave up on."""

    running_s: float
    thread_id: int
    blocks_loop: bool
    """It runs on the request loop: the worker answers nothing until it returns."""
    stack: str
    """Where the call's thread is (empty if it returned meanwhile)."""

    def describe(self) -> str:
        where = ("on the request loop, which answers nothing meanwhile" if self.blocks_loop
                 else "in a thread, after its request timed out")
        return f"a model call has been running for {self.running_s:.1f} s {where}"


class Watchdog:
    """Checks the running model calls of one serving process every few moments.

    ``running``: (start, thread id) of the calls running now, as
    :meth:`greenbutton.calls.ModelCalls.snapshot` gives them.
    ``on_stuck`` runs (once, on the watchdog's thread) with the first stuck call found;
    ``on_check`` after every check that found none (a heartbeat: see
    :meth:`~greenbutton.dataplane.balance.WorkerBalancer.promise`).
    """

    def __init__(self, running: Callable[[], Sequence[tuple[float, int]]], *,
                 request_timeout_s: float, stuck_call_s: float,
                 on_stuck: Callable[[StuckCall], None],
                 on_check: Callable[[], None] | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.running, self.on_stuck, self.on_check = running, on_stuck, on_check
        self.request_timeout_s, self.stuck_call_s = request_timeout_s, stuck_call_s
        self.interval_s = min(MAX_CHECK_INTERVAL_S, request_timeout_s / 4)
        self.loop_thread: int | None = None
        self.stuck: StuckCall | None = None
        self._stopped = threading.Event()
        self._overrunning = None if registry is None else Gauge(
            "greenbutton_model_calls_overrunning",
            "Model calls still running after the request timeout (they cannot be stopped; "
            "the worker is replaced once one is stuck)", registry=registry)

    def start(self, loop_thread: int) -> None:
        """Start watching; ``loop_thread``: the id of the thread running the request loop.

        The first heartbeat (``on_check``) is given here: a call could lock the interpreter
        before the first check."""
        self.loop_thread = loop_thread
        if self.on_check is not None:
            self.on_check()
        threading.Thread(target=self._watch, name="greenbutton-watchdog", daemon=True).start()

    def stop(self) -> None:
        """Stop watching (returns at once; the thread ends within one interval)."""
        self._stopped.set()

    def check(self, now: float | None = None) -> StuckCall | None:
        """The first stuck call (with its stack), or None; updates the overrunning gauge."""
        now = time.monotonic() if now is None else now
        overrunning, stuck = 0, None
        for started, thread_id in self.running():
            running_s = now - started
            overrunning += running_s > self.request_timeout_s
            on_loop = thread_id == self.loop_thread
            limit_s = self.request_timeout_s if on_loop else self.stuck_call_s
            if stuck is None and running_s > limit_s:
                stuck = StuckCall(running_s, thread_id, on_loop, stack_of(thread_id))
        if self._overrunning is not None:
            self._overrunning.set(overrunning)
        return stuck

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                stuck = self.check()
            except Exception:  # the watchdog must outlive its own bugs
                logger.exception("the watchdog's check failed")
                continue
            if stuck is not None:
                self.stuck = stuck
                if self._overrunning is not None:  # its calls leave with the worker
                    self._overrunning.set(0)
                self.on_stuck(stuck)
                return
            if self.on_check is not None:
                self.on_check()


def stack_of(thread_id: int) -> str:
    """The current stack of thread ``thread_id``, formatted ("" if it has ended)."""
    frame = sys._current_frames().get(thread_id)
    return "" if frame is None else "".join(traceback.format_stack(frame))
