"""``local://``: each (deployment, version, replica) is a supervised serving process on 127.0.0.1.

The target binds the listening socket itself and hands its fd to the child, so the port is
known before the child starts and nothing else can take it. Children log to a file under
``<home>/logs``; running instances are recorded in ``<home>/run/local-target.json`` and a
restarted controller (even after ``kill -9``) adopts the ones still alive: same port, same URL,
health-checked again, never a duplicate (see ``local_records``). A ready child that stops
answering ``/health/live`` for ``controller.liveness_timeout_s`` is killed and restarted, as a
Kubernetes liveness probe would have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ...config import Settings
from ...errors import GreenbuttonError
from ..reconcile import InstanceState, ObservedDeployment, VersionRef, check_name
from .local_records import (
    INSTANCE_ID_ENV,
    InstanceRecord,
    find_live_pid,
    is_alive,
    load_records,
    save_records,
    signal_pid,
    start_time_of,
    wait_gone,
)

if TYPE_CHECKING:
    from .local_sandbox import SandboxedServing

log = logging.getLogger(__name__)

ServeArgv = Callable[[VersionRef, int], list[str]]
"""Builds a child's argv from the version to serve and the fd of its listening socket."""

_EXIT_POLL_S = 0.05
_KILL_WAIT_S = 5.0
_HEALTH_TIMEOUT_S = 2.0
_READY_PROBE_TIMEOUT_S = 0.3
"""A starting child holds its socket before it answers (it imports its model): the kernel
queues the probe. Give up soon and ask again next pass (every ``ready_poll_interval_s`` while
children start) rather than hold the pass, and a promotion behind it, for seconds."""
_LOG_TAIL_BYTES = 4096
_LOG_TAIL_LINES = 8


def serve_argv(ref: VersionRef, fd: int) -> list[str]:
    """``python -m greenbutton serve models:/NAME/VERSION --fd FD``."""
    return [sys.executable, "-m", "greenbutton", "serve", f"models:/{ref.model}/{ref.version}",
            "--fd", str(fd)]


@dataclass
class _Instance:
    ref: VersionRef
    process: subprocess.Popen[bytes] | None
    record: InstanceRecord
    state: InstanceState = InstanceState.STARTING
    reason: str | None = None
    failures: int = 0
    changed_at: float = field(default_factory=time.monotonic)
    live_at: float = 0.0
    """When it last answered ``/health/live`` (monotonic; 0: not since it became ready)."""
    is_adopted: bool = False
    """Started by a previous controller: not our child, watched through /proc."""
    restarts: int = 0
    """Times this slot was started again after a failure (never reset)."""
    last_error: str | None = None
    """Why it last failed (kept once it is ready again)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.record.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.record.log)

    def enter(self, state: InstanceState, reason: str | None = None) -> None:
        self.state, self.reason, self.changed_at = state, reason, time.monotonic()


class LocalTarget:
    """Serving processes on this machine, supervised by the controller's process."""

    def __init__(self, settings: Settings, *, argv: ServeArgv = serve_argv,
                 sandboxed: SandboxedServing | None = None) -> None:
        """``sandboxed``: start children in the sandbox, each on a copy of its version."""
        self._settings = settings
        self._argv = argv
        self._sandboxed = sandboxed
        self._instances: dict[VersionRef, _Instance] = {}
        self._logs = settings.home / "logs"
        self._state_file = settings.home / "run" / "local-target.json"
        self._client = httpx.AsyncClient(timeout=_HEALTH_TIMEOUT_S, trust_env=False)
        self._has_adopted = False
        self._pending: InstanceRecord | None = None

    async def observe(self) -> list[ObservedDeployment]:
        """Check every child: exited → failed, answering /health/ready → ready, ready but
        silent on /health/live for ``liveness_timeout_s`` → killed and failed."""
        await self._adopt_once()
        ready = [i for i in self._instances.values() if i.state is InstanceState.READY]
        starting = [i for i in self._instances.values() if self._check_exit(i)]
        await asyncio.gather(*(self._check_ready(i) for i in starting),
                             *(self._check_live(i) for i in ready))
        now = time.monotonic()
        return [self._observed(i, now) for i in self._instances.values()]

    async def start(self, ref: VersionRef) -> None:
        """Start a child for ``ref`` unless one is live; a failed one is replaced."""
        check_name(ref.name)
        check_name(ref.model)
        if not isinstance(ref.version, int) or ref.version < 1:
            raise ValueError(f"invalid version {ref.version!r}")
        if not isinstance(ref.replica, int) or not 0 <= ref.replica < 256:
            raise ValueError(f"invalid replica {ref.replica!r}")
        await self._adopt_once()
        previous = self._instances.get(ref)
        if previous is not None and previous.state is not InstanceState.FAILED:
            return
        failures = previous.failures if previous else 0
        model = None
        if self._sandboxed is not None:
            try:
                model = await asyncio.to_thread(self._sandboxed.prepare, ref)
            except GreenbuttonError as error:
                instance = self._failed(ref, failures, f"no copy: {error.message}")
                self._instances[ref] = _carry_history(instance, previous)
                return
        self._instances[ref] = _carry_history(self._spawn(ref, failures, model), previous)
        self._save()

    async def _adopt_once(self) -> None:
        """Take over the live processes a previous controller recorded (once, at start)."""
        if self._has_adopted:
            return
        self._has_adopted = True
        for record in load_records(self._state_file):
            pid = find_live_pid(record)
            if pid is None:
                continue  # gone, or the pid now belongs to someone else: leave it alone
            ref = VersionRef(record.name, record.model, record.version, record.replica)
            record = InstanceRecord(**{**record.__dict__, "pid": pid,
                                       "start_time": record.start_time or start_time_of(pid)})
            if ref in self._instances:  # a duplicate: keep the first, stop this one
                signal_pid(pid, record.start_time, signal.SIGTERM)
                continue
            log.info("adopting %s (pid %d, port %d)", ref, pid, record.port)
            self._instances[ref] = _Instance(ref, None, record, is_adopted=True)
        self._save()

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        """SIGTERM the child, wait up to ``drain_timeout_s`` for it to exit, then SIGKILL."""
        instance = self._instances.get(ref)
        if instance is None:
            return
        instance.enter(InstanceState.STOPPING)
        try:
            if instance.is_adopted:
                await _terminate_adopted(instance.record, drain_timeout_s)
            else:
                await _terminate(instance.process, drain_timeout_s)
        finally:
            if self._instances.get(ref) is instance:
                del self._instances[ref]
            self._save()
            self._release_copy(ref)

    def _release_copy(self, ref: VersionRef) -> None:
        """Remove a version's copy once nothing here serves it."""
        if self._sandboxed is None or any((r.model, r.version) == (ref.model, ref.version)
                                          for r in self._instances):
            return
        self._sandboxed.copies.release(ref.model, ref.version)

    async def close(self) -> None:
        """Stop every child (drain timeout from settings) and close the health client."""
        drain_s = self._settings.controller.drain_timeout_s
        await asyncio.gather(*(self.stop(ref, drain_s) for ref in list(self._instances)))
        await self._client.aclose()

    @staticmethod
    def _failed(ref: VersionRef, failures: int, reason: str) -> _Instance:
        record = InstanceRecord(ref.name, ref.model, ref.version, 0, uuid.uuid4().hex, "",
                                replica=ref.replica)
        instance = _Instance(ref, None, record, failures=failures + 1, last_error=reason)
        instance.enter(InstanceState.FAILED, reason)
        return instance

    def _spawn(self, ref: VersionRef, failures: int, model: Path | None = None) -> _Instance:
        self._logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        replica = f"-r{ref.replica}" if ref.replica else ""
        log_path = self._logs / f"{ref.name}-v{ref.version}{replica}.log"
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sock = socket.create_server(("127.0.0.1", 0))
        record = InstanceRecord(ref.name, ref.model, ref.version, sock.getsockname()[1],
                                uuid.uuid4().hex, str(log_path), replica=ref.replica)
        self._pending = record
        try:
            self._save()  # before the spawn: a kill -9 right after it still finds the child
            argv = self._argv(ref, sock.fileno())
            os.write(log_fd, f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {argv}\n".encode())
            process = self._popen(argv, record, sock.fileno(), log_fd, model)
        except OSError as error:
            reason = f"could not start: {error}"
            instance = _Instance(ref, None, record, failures=failures + 1, last_error=reason)
            instance.enter(InstanceState.FAILED, reason)
            return instance
        finally:
            self._pending = None
            sock.close()
            os.close(log_fd)
        record = InstanceRecord(**{**record.__dict__, "pid": process.pid,
                                   "start_time": start_time_of(process.pid)})
        return _Instance(ref, process, record, failures=failures)

    def _popen(self, argv: list[str], record: InstanceRecord, fd: int, log_fd: int,
               model: Path | None) -> subprocess.Popen[bytes]:
        """A child with what a serving process needs to know, none of the platform's
        settings or secrets; in the sandbox when configured."""
        env = {**self._settings.serving_environ(),
               "GREENBUTTON_SERVING__WORKERS": str(self._settings.controller.workers_per_replica),
               INSTANCE_ID_ENV: record.instance_id}
        if model is not None:
            env["GREENBUTTON_SERVING__MODEL_DIR"] = str(model)
        if self._sandboxed is not None and model is not None:
            return self._sandboxed.popen(argv, model, env=env, pass_fds=(fd,), output=log_fd)
        return subprocess.Popen(
            argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            cwd=self._state_file.parent,  # not ours: a .env there holds our settings
            env={**{k: v for k, v in os.environ.items() if not k.startswith("GREENBUTTON_")},
                 **env},
            start_new_session=True,  # Ctrl-C reaches the controller, which drains children
        )

    def _check_exit(self, instance: _Instance) -> bool:
        """Mark an exited or overdue child failed; True if it is still starting."""
        if instance.state in (InstanceState.FAILED, InstanceState.STOPPING):
            return False
        code = instance.process.poll() if instance.process else None
        if code is not None:
            self._fail(instance, f"exited with code {code}: {_tail(instance.log_path)}")
            return False
        if instance.is_adopted and not is_alive(instance.record.pid or 0,
                                                instance.record.start_time):
            self._fail(instance, f"adopted process exited: {_tail(instance.log_path)}")
            return False
        if instance.state is InstanceState.READY:
            if time.monotonic() - instance.changed_at >= self._restart_backoff_max_s:
                instance.failures = 0
            return False
        if time.monotonic() - instance.changed_at > self._settings.controller.ready_timeout_s:
            self._kill(instance)
            timeout = self._settings.controller.ready_timeout_s
            self._fail(instance, f"not ready after {timeout:g}s: {_tail(instance.log_path)}")
            return False
        return True

    async def _check_live(self, instance: _Instance) -> None:
        if instance.state is not InstanceState.READY:  # (it exited meanwhile)
            return
        with contextlib.suppress(httpx.TransportError):
            response = await self._client.get(f"{instance.url}/health/live")
            if response.status_code == 200:
                instance.live_at = time.monotonic()
                return
        timeout = self._settings.controller.liveness_timeout_s
        if time.monotonic() - max(instance.live_at, instance.changed_at) <= timeout:
            return
        self._kill(instance)
        self._fail(instance, f"not answering /health/live for {timeout:g}s, killed: "
                             f"{_tail(instance.log_path)}")

    async def _check_ready(self, instance: _Instance) -> None:
        try:
            response = await self._client.get(f"{instance.url}/health/ready",
                                              timeout=_READY_PROBE_TIMEOUT_S)
        except httpx.TransportError:
            return
        if response.status_code == 200 and instance.state is InstanceState.STARTING:
            instance.enter(InstanceState.READY)

    @staticmethod
    def _kill(instance: _Instance) -> None:
        if instance.process is not None:
            instance.process.kill()
            instance.process.wait(timeout=_KILL_WAIT_S)
        elif instance.is_adopted and instance.record.pid is not None:
            signal_pid(instance.record.pid, instance.record.start_time, signal.SIGKILL)

    @property
    def _restart_backoff_max_s(self) -> float:
        return self._settings.controller.restart_backoff_max_s

    def _fail(self, instance: _Instance, reason: str) -> None:
        instance.failures += 1
        instance.last_error = reason
        instance.enter(InstanceState.FAILED, reason)
        self._save()

    def _observed(self, instance: _Instance, now: float) -> ObservedDeployment:
        is_live = instance.state in (InstanceState.STARTING, InstanceState.READY)
        return ObservedDeployment(
            ref=instance.ref,
            state=instance.state,
            url=instance.url if is_live else None,
            reason=instance.reason,
            handle=str(instance.record.pid) if instance.record.pid else None,
            failures=instance.failures,
            state_age_s=now - instance.changed_at,
            restarts=instance.restarts,
            last_error=instance.last_error,
        )

    def _save(self) -> None:
        """Record live children (and one about to be spawned) atomically."""
        records = [
            i.record for i in self._instances.values()
            if i.record.pid is not None and i.state is not InstanceState.FAILED
        ]
        save_records(self._state_file, records + ([self._pending] if self._pending else []))


def _carry_history(instance: _Instance, previous: _Instance | None) -> _Instance:
    """A restarted slot keeps counting: one more restart, the previous failure's reason."""
    if previous is not None:
        instance.restarts = previous.restarts + 1
        instance.last_error = instance.last_error or previous.last_error
    return instance


async def _terminate_adopted(record: InstanceRecord, grace_s: float) -> None:
    """SIGTERM a previous controller's child, then SIGKILL after ``grace_s``."""
    if record.pid is None:
        return
    signal_pid(record.pid, record.start_time, signal.SIGTERM)
    try:
        if not await wait_gone(record.pid, record.start_time, grace_s):
            signal_pid(record.pid, record.start_time, signal.SIGKILL)
            await wait_gone(record.pid, record.start_time, _KILL_WAIT_S)
    except asyncio.CancelledError:  # the controller is stopping: it forgets the child next
        signal_pid(record.pid, record.start_time, signal.SIGKILL)
        raise


async def _terminate(process: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s`` for exit, then SIGKILL; always reaps the child."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        if not await _wait_exit(process, grace_s):
            process.kill()
            await _wait_exit(process, _KILL_WAIT_S)
    except asyncio.CancelledError:  # the controller is stopping: it forgets the child next
        process.kill()
        process.wait(timeout=_KILL_WAIT_S)  # killed: gone in a moment, and reaped
        raise


async def _wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_EXIT_POLL_S)
    return True


def _tail(path: Path) -> str:
    """The last lines of a child's log, for a failure reason."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-_LOG_TAIL_LINES:])
