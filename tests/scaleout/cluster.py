"""Several `greenbutton up` replicas on one PostgreSQL store and one home (local target)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.governance.tokens import read_token_file

from .conftest import free_port


@dataclass
class Replica:
    """One control-plane process."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict[str, Any] | None:
        try:
            answer = httpx.get(f"{self.url}/api/v1/health", timeout=1)
        except httpx.HTTPError:
            return None
        return dict(answer.json()) if answer.status_code == 200 else None

    def is_leader(self) -> bool:
        health = self.health()
        return bool(health and health.get("leader"))


@dataclass
class Cluster:
    """Replicas sharing ``settings`` (store, MLflow, home); ``extra_env``: S3 credentials."""

    settings: Settings
    extra_env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)
    token: str | None = None

    def env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENBUTTON_")}
        return {**env, **self.extra_env, **self.settings.environ(),
                "GREENBUTTON_SERVER__PORT": str(port),
                "GREENBUTTON_SERVER__URL": f"http://127.0.0.1:{port}"}

    def start(self) -> Replica:
        port = free_port()
        log = self.settings.home / f"control-plane-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                       env=self.env(port), stdout=out, stderr=subprocess.STDOUT)
        replica = Replica(port, process, log)
        self.replicas.append(replica)
        wait_for(lambda: replica.health() is not None, 60, f"replica {port} healthy",
                 replica)
        if self.token is None:  # the first replica wrote it (never to its output)
            self.token = read_token_file(self.settings.home)
        return replica

    def client(self, replica: Replica) -> ControlPlaneClient:
        return ControlPlaneClient(replica.url, token=self.token)

    def leaders(self) -> list[Replica]:
        return [r for r in self.replicas if r.process.poll() is None and r.is_leader()]

    def stop(self) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(timeout=10)
        kill_serving_processes(self.settings.home)


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str,
             replica: Replica | None = None) -> float:
    """Poll ``predicate`` every 50 ms; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if replica is not None and replica.process.poll() is not None:
            raise AssertionError(f"{what}: replica exited\n{replica.log.read_text()[-3000:]}")
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        time.sleep(0.05)
    return time.monotonic() - start


def serving_processes(home: Path) -> dict[int, tuple[str, int]]:
    """pid → (model URI, port) of every live `greenbutton serve` started for ``home``; its
    worker processes (forked, same argv and port) are part of it, not other instances."""
    found: dict[int, tuple[str, int]] = {}
    parents: dict[int, int] = {}
    marker = f"GREENBUTTON_HOME={home}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            status, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if b"serve" not in argv or marker not in environ or status == "Z":
            continue
        texts = [a.decode() for a in argv]
        model = next((a for a in texts if a.startswith("models:/")), "?")
        fd = int(texts[texts.index("--fd") + 1]) if "--fd" in texts else -1
        found[int(proc.name)] = (model, _listening_port(int(proc.name), fd))
        parents[int(proc.name)] = int(ppid)
    return {_launcher(pid, parents[pid]): what for pid, what in found.items()
            if parents[pid] not in found}


def _launcher(pid: int, parent: int) -> int:
    """The pid the controller records: the sandbox's outer launcher when there is one (its
    namespace's init, also ``sandbox.enter``, sits between the launcher and the program)."""
    while True:
        try:
            stat = (Path("/proc") / str(parent) / "stat").read_text()
            argv = (Path("/proc") / str(parent) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return pid
        if b"greenbutton.sandbox.enter" not in argv:
            return pid
        pid, parent = parent, int(stat.rsplit(")", 1)[1].split()[1])


def _listening_port(pid: int, fd: int) -> int:
    """The port of the socket ``pid`` serves on (its inherited fd), from /proc/net/tcp."""
    try:
        inode = os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]")
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] == inode:
                return int(parts[1].split(":")[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return -1


def kill_serving_processes(home: Path) -> None:
    """Stop what the replicas left running (a shared-store leader hands them over on exit)."""
    for pid in serving_processes(home):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
