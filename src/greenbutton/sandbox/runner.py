"""``Sandbox``: run a Python program on untrusted model code, isolated, and collect its answer.

The program gets a scrubbed environment (no ``GREENBUTTON_*``, ``MLFLOW_*``, cloud or
database credentials), a private work folder holding what the caller put there (e.g. a copy
of the model's artifacts), no view of the platform's folders and no network (see
:mod:`.enter`). Its last argument is the number of a pipe on which it writes its answer;
its output and error go to a bounded tail kept for error messages. Nothing comes back
through a file or the store.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .enter import EXIT_REFUSED
from .policy import SandboxPolicy

log = logging.getLogger(__name__)
LOG_TAIL_BYTES = 8192
_PIPE_CHUNK = 65536
_READER_GRACE_S = 5.0


@dataclass(frozen=True)
class Isolation:
    """What held around the program (reported by the sandbox before the program ran)."""

    uid: int
    network: str
    filesystem: str
    pids: str
    problems: tuple[str, ...] = ()

    @property
    def is_confined(self) -> bool:
        """The program could not read the platform's files: covered, or another user's."""
        return self.filesystem == "hidden" or (self.uid not in (-1, os.getuid()))

    def describe(self) -> dict[str, Any]:
        """As stored with gate results: the evidence of how the code was run."""
        return {"uid": self.uid, "network": self.network, "filesystem": self.filesystem,
                "pids": self.pids, **({"problems": list(self.problems)} if self.problems else {})}


@dataclass(frozen=True)
class SandboxRun:
    """How one program run ended."""

    returncode: int
    output: bytes
    """What the program wrote on its answer pipe (at most the policy's ``max_output_bytes``)."""
    log_tail: str
    isolation: Isolation | None
    is_timed_out: bool = False
    is_output_too_large: bool = False

    @property
    def is_refused(self) -> bool:
        """The policy's isolation could not be had: the program was never started."""
        return self.returncode == EXIT_REFUSED and self.isolation is not None

    def failure(self) -> str | None:
        """Why this run gave no usable answer, or ``None``."""
        if self.is_timed_out:
            return "timed out"
        if self.is_output_too_large:
            return "its answer exceeded the size limit"
        if self.is_refused:
            assert self.isolation is not None
            return "refused to run unconfined: " + "; ".join(self.isolation.problems)
        if self.returncode != 0:
            return f"exited with status {self.returncode}: {self.log_tail[-2000:]}"
        return None


class Sandbox:
    """Runs Python programs under a :class:`SandboxPolicy`.

    Usage::

        sandbox = Sandbox(policy_for(settings))
        with sandbox.workdir() as work:
            copy_artifacts_into(work / "model")
            done = sandbox.run(["-m", "greenbutton.gates.worker"], stdin=job, workdir=work,
                               timeout_s=300)
        json.loads(done.output)
    """

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A private folder (0700) for one run, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix="greenbutton-sandbox-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def run(self, program: Sequence[str], *, stdin: bytes, workdir: Path,
            timeout_s: float) -> SandboxRun:
        """Run ``python -I <program> <answer fd>`` in ``workdir``, at most ``timeout_s``."""
        (workdir / "tmp").mkdir(exist_ok=True)
        self._hand_over(workdir)
        answer_r, answer_w = os.pipe()
        report_r, report_w = os.pipe()
        config = self._config([sys.executable, "-I", *program, str(answer_w)], report_w,
                              cwd=workdir, rules=[["work", str(workdir)]])
        config["parent_pid"] = os.getpid()  # a run dies with us: no orphan when we are killed
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-m", "greenbutton.sandbox.enter", json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(answer_w, report_w), env=self._environ(workdir / "tmp"),
                cwd=workdir, start_new_session=True)
        finally:
            os.close(answer_w)
            os.close(report_w)
        return self._collect(process, stdin, answer_r, report_r, timeout_s)

    def spawn(self, argv: Sequence[str], *, env: dict[str, str], pass_fds: Sequence[int],
              output: int, kept: Sequence[Path] = (), writable: Sequence[Path] = ()
              ) -> subprocess.Popen[bytes]:
        """Start a long-running program (a server) in the sandbox and return at once. It sees
        ``kept`` read-only and ``writable`` read-write besides what Python needs, a private
        ``/tmp`` (its home and working folder), ``env`` added to the minimal environment,
        and writes to ``output``. Its isolation is logged when it is known."""
        report_r, report_w = os.pipe()
        rules = [["keep", str(p)] for p in kept] + [["work", str(p)] for p in writable]
        config = self._config(list(argv), report_w, cwd=Path("/tmp"), rules=rules)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-m", "greenbutton.sandbox.enter", json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                pass_fds=(*pass_fds, report_w), env={**self._environ(Path("/tmp")), **env},
                start_new_session=True)
        finally:
            os.close(report_w)
        threading.Thread(target=_log_isolation, args=(report_r, process.pid), daemon=True,
                         name="sandbox-report").start()
        return process

    def _config(self, argv: list[str], report_fd: int, *, cwd: Path,
                rules: list[list[str]]) -> dict[str, Any]:
        policy = self.policy
        given = {str(Path(path).resolve()) for kind, path in rules if kind == "work"}
        common = ([["hide", p] for p in policy.hidden if p not in given]  # given read-write
                  + [["keep", p] for p in policy.kept])
        return {
            "rules": [*common, *rules],
            "uid": policy.uid, "gid": policy.gid,
            "is_network_allowed": policy.is_network_allowed,
            "is_unconfined_allowed": policy.is_unconfined_allowed,
            "max_file_bytes": policy.max_file_bytes,
            "report_fd": report_fd,
            "cwd": str(cwd),
            "argv": argv,
        }

    def _environ(self, temporary: Path) -> dict[str, str]:
        """Nothing of the platform's environment: only what a Python program needs."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(temporary),
            "TMPDIR": str(temporary),
            "MPLCONFIGDIR": str(temporary),
            "NUMBA_CACHE_DIR": str(temporary),
        }

    def _hand_over(self, workdir: Path) -> None:
        """Give the work folder to the sandbox's user (when running as root)."""
        if os.geteuid() != 0:
            return
        for folder, folders, files in os.walk(workdir):
            for name in (folder, *(os.path.join(folder, n) for n in (*folders, *files))):
                os.lchown(name, self.policy.uid, self.policy.gid)

    def _collect(self, process: subprocess.Popen[bytes], stdin: bytes, answer_r: int,
                 report_r: int, timeout_s: float) -> SandboxRun:
        assert process.stdin is not None and process.stdout is not None
        tail: collections.deque[bytes] = collections.deque()
        answer = _BoundedRead(answer_r, self.policy.max_output_bytes,
                              on_overflow=lambda: _kill_group(process))
        report = _BoundedRead(report_r, 65536)
        readers = [threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True),
                   threading.Thread(target=_keep_tail, args=(process.stdout, tail), daemon=True),
                   threading.Thread(target=answer.run, daemon=True),
                   threading.Thread(target=report.run, daemon=True)]
        for reader in readers:
            reader.start()
        is_timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            is_timed_out = True
            _kill_group(process)
            process.wait()
        for reader in readers:
            reader.join(_READER_GRACE_S)
            if reader.is_alive():  # a process the program left behind holds a pipe open
                _kill_group(process)
        return SandboxRun(
            returncode=process.returncode, output=answer.data,
            log_tail=b"".join(tail).decode("utf-8", "replace"),
            isolation=_isolation(report.data), is_timed_out=is_timed_out,
            is_output_too_large=answer.has_overflowed)


class _BoundedRead:
    """Reads a pipe to its end, keeping at most ``limit`` bytes."""

    def __init__(self, descriptor: int, limit: int, on_overflow: Any = None) -> None:
        self.descriptor, self.limit, self.on_overflow = descriptor, limit, on_overflow
        self.chunks: list[bytes] = []
        self.size = 0
        self.has_overflowed = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def run(self) -> None:
        with os.fdopen(self.descriptor, "rb", buffering=0) as pipe:
            while chunk := pipe.read(_PIPE_CHUNK):
                if self.size + len(chunk) > self.limit:
                    self.has_overflowed = True
                    if self.on_overflow is not None:
                        self.on_overflow()
                    return
                self.chunks.append(chunk)
                self.size += len(chunk)


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
        pipe.close()


def _keep_tail(pipe: Any, tail: collections.deque[bytes]) -> None:
    size = 0
    with pipe:
        while chunk := pipe.read1(_PIPE_CHUNK):
            tail.append(chunk)
            size += len(chunk)
            while size - len(tail[0]) >= LOG_TAIL_BYTES:
                size -= len(tail.popleft())


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _log_isolation(report_r: int, pid: int) -> None:
    reader = _BoundedRead(report_r, 65536)
    reader.run()
    isolation = _isolation(reader.data)
    if isolation is None:
        log.warning("sandboxed process %d reported no isolation (it did not start)", pid)
    elif isolation.is_confined:
        log.info("sandboxed process %d: %s", pid, isolation.describe())
    else:
        log.warning("sandboxed process %d runs UNCONFINED: %s", pid, isolation.describe())


def _isolation(report: bytes) -> Isolation | None:
    try:
        fields = json.loads(report)
        return Isolation(int(fields["uid"]), str(fields["network"]), str(fields["filesystem"]),
                         str(fields["pids"]), tuple(str(p) for p in fields["problems"]))
    except (ValueError, KeyError, TypeError):
        return None
