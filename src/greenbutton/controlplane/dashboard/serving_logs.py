"""The last lines each serving process of a deployment wrote to its log (local target).

The local target starts each (deployment, version, replica) with its output appended to a file
under ``<home>/logs`` and records it in ``<home>/run/local-target.json``; this reads those
records and the tail of each file. Other targets keep logs where their platform does
(``kubectl logs``): ``tail`` answers None for them. Usage::

    ServingLogs(settings).tail("digits")   # [BackendLog(version=1, replica=0, lines=[...])]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...config import Settings
from ...controller.targets.local_records import load_records

MAX_LINES = 200
MAX_BYTES = 64 * 1024
"""Read at most this much of the end of each file, however large the log has grown."""
MAX_LINE_CHARS = 2000


@dataclass(frozen=True)
class BackendLog:
    """The newest lines of one serving process's log, oldest first."""

    version: int
    replica: int
    lines: list[str]


class ServingLogs:
    """Tails the logs of a deployment's local serving processes."""

    def __init__(self, settings: Settings) -> None:
        self._is_local = settings.controller.target_uri.startswith("local:")
        self._records = settings.home / "run" / "local-target.json"  # the local target's file
        self._root = (settings.home / "logs").resolve()

    @property
    def is_available(self) -> bool:
        """Whether serving logs are on this machine (the local target)."""
        return self._is_local

    def tail(self, name: str, max_lines: int = MAX_LINES) -> list[BackendLog] | None:
        """Every recorded process of ``name``, newest version first; None: not the local
        target (its logs are not on this machine)."""
        if not self._is_local:
            return None
        found = [BackendLog(r.version, r.replica, self._lines(Path(r.log), max_lines))
                 for r in load_records(self._records) if r.name == name]
        return sorted(found, key=lambda b: (-b.version, b.replica))

    def _lines(self, path: Path, max_lines: int) -> list[str]:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root):  # only the platform's own log folder
            return []
        try:
            with resolved.open("rb") as file:
                size = file.seek(0, os.SEEK_END)
                file.seek(max(0, size - MAX_BYTES))
                text = file.read(MAX_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return []
        lines = text.splitlines()
        if size > MAX_BYTES:
            lines = lines[1:]  # the first one was cut in the middle
        return [line[:MAX_LINE_CHARS] for line in lines[-max_lines:]]
