"""The model calls running now in this process: when each started and on which thread.

Bracketing every call to a served model's code (predictions, explanations) lets a watchdog
find one that never returns (:mod:`greenbutton.dataplane.watchdog`)::

    token = calls.begin()
    try:
        ...  # the model's code
    finally:
        calls.end(token)
"""

from __future__ import annotations

import itertools
import threading
import time


class ModelCalls:
    """The model calls running now: when each started and on which thread.

    ``begin``/``end`` bracket every call (a dict insert and delete, well under a
    microsecond); the watchdog reads a snapshot from its own thread.
    """

    def __init__(self) -> None:
        self._running: dict[int, tuple[float, int]] = {}
        self._tokens = itertools.count()

    def begin(self) -> int:
        """Record a call starting on this thread; returns the token to :meth:`end` it."""
        token = next(self._tokens)
        self._running[token] = (time.monotonic(), threading.get_ident())
        return token

    def end(self, token: int) -> None:
        """Record the call ``token`` as finished."""
        self._running.pop(token, None)

    def snapshot(self) -> list[tuple[float, int]]:
        """(start on the monotonic clock, thread id) of every running call."""
        return list(self._running.values())  # one C-level copy: safe against other threads
