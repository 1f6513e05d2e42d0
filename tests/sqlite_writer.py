"""Another connection holding a SQLite file's write lock (for tests of waiting on it)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def holding_write_lock(path: Path, *, release_after_s: float | None = None) -> Iterator[None]:
    """A connection to ``path`` in a write transaction (``BEGIN IMMEDIATE``) for the block,
    or, with ``release_after_s``, committing that long after the block starts."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO held VALUES (1)")
    release = None
    if release_after_s is not None:
        release = threading.Timer(release_after_s, lambda: writer.execute("COMMIT"))
        release.start()
    try:
        yield
    finally:
        if release is not None:
            release.join()
        writer.close()
