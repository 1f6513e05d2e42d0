"""The local target's state file, and how it recognises its own processes after a restart.

Every child gets a random ``GREENBUTTON_INSTANCE_ID`` in its environment, recorded (with the
port) *before* the child is spawned and completed with pid and start time right after. A
restarted controller adopts a recorded process only if ``/proc/<pid>/environ`` still holds that
id and its start time matches, so a recycled pid is never adopted nor signalled; a record whose
pid was never written (killed between spawn and save) is found by scanning ``/proc`` for the id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INSTANCE_ID_ENV = "GREENBUTTON_INSTANCE_ID"
_PROC = Path("/proc")


@dataclass(frozen=True)
class InstanceRecord:
    """One child as written to ``<home>/run/local-target.json``."""

    name: str
    model: str
    version: int
    port: int
    instance_id: str
    log: str
    pid: int | None = None
    start_time: str | None = None
    replica: int = 0


def load_records(path: Path) -> list[InstanceRecord]:
    """Records a previous run left (it was killed, say); unreadable entries are skipped."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("ignoring unreadable state file %s", path)
        return []
    records = []
    for raw in state.get("instances", []) if isinstance(state, dict) else []:
        try:
            records.append(InstanceRecord(**raw))
        except TypeError:
            log.warning("ignoring malformed record in %s: %r", path, raw)
    return records


def save_records(path: Path, records: list[InstanceRecord]) -> None:
    """Write the records atomically (temp file + fsync + rename, mode 0600)."""
    text = json.dumps({"instances": [asdict(r) for r in records]}, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def start_time_of(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; comm may hold spaces


def has_instance_id(pid: int, instance_id: str) -> bool:
    """Whether ``pid``'s environment carries ``instance_id`` (False if unreadable or gone)."""
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{INSTANCE_ID_ENV}={instance_id}".encode() in environ.split(b"\0")


def find_live_pid(record: InstanceRecord) -> int | None:
    """The pid of the process ``record`` describes if it still runs, else None."""
    if record.pid is not None:
        is_same = has_instance_id(record.pid, record.instance_id) and (
            record.start_time is None or start_time_of(record.pid) == record.start_time)
        return record.pid if is_same else None
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if entry.name.isdigit() and has_instance_id(int(entry.name), record.instance_id):
            return int(entry.name)
    return None


def is_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether ``pid`` still is the process that started at ``start_time`` (not a zombie)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[0] != "Z" and (start_time is None or fields[19] == start_time)


def signal_pid(pid: int, start_time: str | None, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid`` only while it is still the same process."""
    if is_alive(pid, start_time):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


async def wait_gone(pid: int, start_time: str | None, timeout_s: float) -> bool:
    """Poll until ``pid`` (not our child: it cannot be reaped here) has exited."""
    deadline = time.monotonic() + timeout_s
    while is_alive(pid, start_time):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
