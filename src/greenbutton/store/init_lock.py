"""One process at a time creates and migrates an embedded database: a file lock in its folder.

Usage::

    with initialising(embedded_folder(uri)):   # None (a database server): no file lock
        create_tables_and_migrate(uri)

``initialising`` holds ``flock`` on ``<folder>/.init.lock`` (the home, for MLflow's and
greenbutton's SQLite files; ``<home>/monitoring`` for the payload store) and writes its pid
inside. The kernel releases the lock when its holder dies, however it dies, so a killed
process leaves nothing stale behind. A process that finds the lock taken says so once and
waits, up to ``timeout_s``; then it fails naming the lock file and the pid holding it.
Servers migrate under their own lock (PostgreSQL: an advisory lock, see :mod:`.migrate`).

Within one process the lock is re-entrant per thread: code that initialises one store while
initialising another in the same folder does not wait for itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NotReady

INIT_LOCK = ".init.lock"
"""The lock file's name, in the folder of the databases it guards."""
INIT_TIMEOUT_S = 120.0
"""How long a process waits for another one to finish initialising (MLflow's migrations of
a new database take a few seconds)."""
_MAX_PAUSE_S = 0.1

log = logging.getLogger(__name__)


class InitialisationTimeout(NotReady):
    """Another process held the initialisation lock for longer than the wait allowed."""

    def __init__(self, lock_file: Path, pid: int | None, timeout_s: float) -> None:
        holder = "another process" if pid is None else f"process {pid}"
        super().__init__(f"{holder} has been initialising {lock_file.parent} for more than "
                         f"{timeout_s:.0f} s (it holds {lock_file}); stop it, or wait and "
                         "retry")
        self.lock_file = lock_file
        self.pid = pid


class FileLock:
    """An exclusive ``flock`` on ``path`` (created 0600), with a note from its holder inside."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.is_held = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_acquire(self, note: str) -> bool:
        """Take the lock if nobody holds it and write ``note`` in the file; False if taken."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.is_held = True
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, note.encode(), 0)
        return True

    def holder_note(self) -> str:
        """What the holder wrote (empty while the lock is free, or just being taken)."""
        return os.pread(self._fd, 4096, 0).decode(errors="replace")

    def close(self) -> None:
        """Release the lock (if held), its note erased first, and close the file."""
        if self._fd < 0:
            return
        try:
            if self.is_held:  # the next holder writes its own
                os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # releases the flock
            self._fd, self.is_held = -1, False


def held_note(path: Path) -> str | None:
    """The note of whoever holds the lock on ``path`` right now; None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only while nobody holds it
    except BlockingIOError:
        return os.pread(fd, 4096, 0).decode(errors="replace")
    else:
        return None
    finally:
        os.close(fd)


def embedded_folder(uri: str) -> Path | None:
    """The folder of the SQLite file a SQLAlchemy URI names; None for anything else (a
    database server, an in-memory database, an HTTP tracking server)."""
    if not uri.partition(":")[0].startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url  # only when the URI is a database's

    url = make_url(uri)
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser().absolute().parent


class _Holding:
    """This process's hold on one lock file: the thread in it, and how deeply."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.file: FileLock | None = None


_holdings: dict[Path, _Holding] = {}
_holdings_lock = threading.Lock()


@contextmanager
def initialising(folder: Path | None, *, timeout_s: float = INIT_TIMEOUT_S) -> Iterator[None]:
    """Hold the initialisation lock of ``folder`` (nothing when None), waiting up to
    ``timeout_s`` for another process (or thread) that holds it."""
    if folder is None:
        yield
        return
    path = folder / INIT_LOCK
    with _holdings_lock:
        holding = _holdings.setdefault(path, _Holding())
    if not holding.thread_lock.acquire(timeout=timeout_s):
        raise InitialisationTimeout(path, os.getpid(), timeout_s)
    try:
        if holding.depth == 0:
            holding.file = _acquire(path, timeout_s)
        holding.depth += 1
        try:
            yield
        finally:
            holding.depth -= 1
            if holding.depth == 0 and holding.file is not None:
                holding.file.close()
                holding.file = None
    finally:
        holding.thread_lock.release()


def _acquire(path: Path, timeout_s: float) -> FileLock:
    lock = FileLock(path)
    try:
        deadline = time.monotonic() + timeout_s
        pause, is_said = 0.005, False
        while not lock.try_acquire(f"{os.getpid()}\n"):
            pid = _pid(lock.holder_note())
            if not is_said:
                log.warning("waiting for another greenbutton process (pid %s) to finish "
                            "initialising %s", "unknown" if pid is None else pid, path.parent)
                is_said = True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InitialisationTimeout(path, pid, timeout_s)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_PAUSE_S)
    except BaseException:
        lock.close()
        raise
    return lock


def _pid(note: str) -> int | None:
    first = note.strip().partition("\n")[0]
    return int(first) if first.isdigit() else None
