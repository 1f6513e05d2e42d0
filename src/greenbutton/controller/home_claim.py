"""One ``greenbutton up`` per home on an embedded store: the second one refuses, naming the first.

Usage::

    claim = claim_home(settings.home, settings.server.url)   # ControlPlaneRunning if taken
    ...                                  # held until the process ends, however it ends

``up`` holds ``flock`` on ``<home>/up.lock`` for its whole life, with its pid and URL written
inside; the kernel releases it when the process dies. Control planes on a shared PostgreSQL
store do not claim the home: they run as replicas, one leading (see :mod:`.leader`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict
from ..store.init_lock import FileLock, held_note

UP_LOCK = "up.lock"
"""The claim's file, in the home."""
_SETTLE_S = 1.0
"""How long a taken lock without a note may be a holder that has not written it yet."""


@dataclass(frozen=True)
class RunningControlPlane:
    """The ``greenbutton up`` holding a home."""

    pid: int
    url: str


class ControlPlaneRunning(Conflict):
    """Another ``greenbutton up`` runs on this home."""

    def __init__(self, home: Path, running: RunningControlPlane | None) -> None:
        who = ("another greenbutton up" if running is None
               else f"another greenbutton up (pid {running.pid}, {running.url})")
        super().__init__(f"{who} is running on {home}: use it, stop it, or give this one "
                         "another GREENBUTTON_HOME (replicas on one home need a PostgreSQL "
                         "store, see docs/scale-out.md)")
        self.running = running


def claim_home(home: Path, url: str) -> FileLock:
    """Claim ``home`` for this process's control plane at ``url``; the returned lock stays
    held until the process ends."""
    lock = FileLock(home / UP_LOCK)
    deadline = time.monotonic() + _SETTLE_S
    note = json.dumps({"pid": os.getpid(), "url": url})
    while not lock.try_acquire(note):
        running = _parse(lock.holder_note())
        if running is not None or time.monotonic() > deadline:
            lock.close()
            raise ControlPlaneRunning(home, running)
        time.sleep(0.01)  # a holder writing its note, or someone looking at the lock
    return lock


def running_control_plane(home: Path) -> RunningControlPlane | None:
    """The ``greenbutton up`` that holds ``home`` now, if any."""
    note = held_note(home / UP_LOCK)
    return None if note is None else _parse(note)


def _parse(note: str) -> RunningControlPlane | None:
    try:
        fields = json.loads(note)
        return RunningControlPlane(int(fields["pid"]), str(fields["url"]))
    except (ValueError, KeyError, TypeError):
        return None
