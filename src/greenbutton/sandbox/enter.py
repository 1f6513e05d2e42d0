"""The sandbox's first stage: ``python -m greenbutton.sandbox.enter CONFIG``.

Started by :class:`~greenbutton.sandbox.runner.Sandbox` with a scrubbed environment. Before
any untrusted code exists in the process, it moves into new mount, PID, IPC and (unless
allowed) network namespaces, covers the platform's folders with empty tmpfs mounts, binds
back read-only what Python needs and read-write the private work folder, forks the
namespace's first process, which mounts a fresh ``/proc``, drops to an unprivileged user
(when started as root), forbids privilege gain, reports what isolation holds on a pipe of its
own, and only then executes the program, as PID 2 under a small init of ours that passes
signals on and reaps (the kernel drops signals an init has no handler for, so a program run as
PID 1 would ignore SIGTERM until it installed one). As a non-root user the namespaces come
from a user namespace mapping the user to itself; ``execve`` then clears the capabilities it
held, so the program cannot undo the mounts.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import linux

EXIT_REFUSED = 125
"""The isolation required by the policy could not be set up: nothing was executed."""
EXIT_EXEC_FAILED = 127
SHARED_TEMP = frozenset({"/tmp", "/var/tmp", "/dev/shm"})
"""Covered by an empty tmpfs anyone may write, as the folders it covers are."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals passed on to the program (blocked from the first fork until a forwarder holds)."""


@dataclass
class Report:
    """What isolation the program runs under (written to the report pipe, as JSON)."""

    uid: int = -1
    network: str = "shared"
    filesystem: str = "visible"
    pids: str = "visible"
    problems: list[str] = field(default_factory=list)


def main(argv: list[str]) -> int:
    """Isolate, fork, exec ``config["argv"]``; return the program's exit status."""
    config: dict[str, Any] = json.loads(argv[1])
    report = Report()
    is_root = os.geteuid() == 0
    try:
        has_namespaces = _enter_namespaces(config, is_root, report)
        if has_namespaces:  # handles opened in the new mount namespace: binds need that
            held = _open_kept(config["rules"])
            _mount_rules(config["rules"], held, report)
            for descriptor in held.values():
                os.close(descriptor)
    except OSError as error:  # half isolated: run nothing
        report.problems.append(f"isolation failed: {error}")
        _write_report(config["report_fd"], report)
        return EXIT_REFUSED
    if config.get("parent_pid") is not None:
        _die_with_parent(int(config["parent_pid"]))
    # held back until someone forwards them: the kernel never drops a blocked signal, even to
    # an init without a handler, so a stop sent while the namespace is set up is not lost
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    child = os.fork()
    if child == 0:
        _become_program(config, is_root, has_namespaces, report)  # never returns
    os.close(config["report_fd"])
    return _wait_forwarding_signals(child)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL when the parent dies (a one-shot job: a gate run outlives no control plane;
    the program, killed with us, has the same setting). Set after the namespaces are entered:
    a change of credentials clears it."""
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the setting took effect
        os._exit(EXIT_REFUSED)


def _enter_namespaces(config: dict[str, Any], is_root: bool, report: Report) -> bool:
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWIPC
    if not config["is_network_allowed"]:
        flags |= linux.CLONE_NEWNET
    uid, gid = os.getuid(), os.getgid()
    if not is_root:
        flags |= linux.CLONE_NEWUSER
    try:
        linux.unshare(flags)
    except OSError as error:
        report.problems.append(f"no namespaces ({error.strerror}): "
                               "user namespaces disabled or a container without them")
        return False
    if not is_root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    if not config["is_network_allowed"]:
        report.network = "isolated"
    return True


def _open_kept(rules: list[list[str]]) -> dict[str, int]:
    """Handles on every folder bound back, taken before anything is covered."""
    held = {}
    for kind, path in rules:
        if kind in ("keep", "work"):
            held[path] = os.open(path, os.O_PATH)  # a folder, or a single file
    return held


def _mount_rules(rules: list[list[str]], held: dict[str, int], report: Report) -> None:
    """Shallow paths first, so a deeper rule overrides a shallower one."""
    umask = os.umask(0o022)  # mount points on the way to a kept folder: traversable by anyone
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        for kind, path in sorted(rules, key=lambda rule: (Path(rule[1]).parts, rule[0] == "hide")):
            if kind == "hide":
                if not os.path.isdir(path):  # under a covered folder, and not bound back
                    continue
                options = "size=512m,mode=1777" if path in SHARED_TEMP else "size=1m,mode=0755"
                linux.mount("tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)
                continue
            _mount_point(path, is_folder=os.path.isdir(f"/proc/self/fd/{held[path]}"))
            linux.mount(f"/proc/self/fd/{held[path]}", path, None, linux.MS_BIND | linux.MS_REC)
            if kind == "keep":
                linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
                            | linux.mount_flags_of(path))
    except OSError as error:
        report.problems.append(f"mounts failed: {error}")
        return
    finally:
        os.umask(umask)
    report.filesystem = "hidden"


def _mount_point(path: str, *, is_folder: bool) -> None:
    """What a bind mount needs at ``path``: a folder for a folder, a file for a file."""
    if is_folder:
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def _become_program(config: dict[str, Any], is_root: bool, has_namespaces: bool,
                    report: Report) -> None:
    """In the forked child (PID 1 of the new namespace): finish isolating, then run the
    program (under :func:`_init_of` when the PID namespace holds)."""
    try:
        if has_namespaces:
            try:
                linux.mount("proc", "/proc", "proc",
                            linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
                report.pids = "isolated"
            except OSError as error:
                report.problems.append(f"no private /proc: {error.strerror}")
        if is_root:
            os.setgroups([])
            os.setresgid(config["gid"], config["gid"], config["gid"])
            os.setresuid(config["uid"], config["uid"], config["uid"])
        report.uid = os.getuid()
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        limit = int(config["max_file_bytes"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        os.chdir(config["cwd"])
        is_confined = report.filesystem == "hidden" or (is_root and report.uid != 0)
        _write_report(config["report_fd"], report)
        if not is_confined and not config["is_unconfined_allowed"]:
            print("sandbox: refusing to run model code unconfined: " + "; ".join(
                report.problems), file=sys.stderr, flush=True)
            os._exit(EXIT_REFUSED)
        if report.pids == "isolated":
            status = _init_of(config["argv"])  # the program runs as PID 2, under us
            os._exit(status if status >= 0 else 128 - status)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.execv(config["argv"][0], config["argv"])
    except BaseException as error:  # noqa: B036 - the forked child must never return
        print(f"sandbox: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    os._exit(EXIT_EXEC_FAILED)


def _init_of(argv: list[str]) -> int:
    """Be the init of the namespace: run ``argv`` as PID 2, pass signals on, reap, and return
    its exit status. The kernel drops a signal to an init that has no handler for it, where
    any other process would die of it: run as PID 1, a program stopped while it still imports
    (no SIGTERM handler yet) would run on. As PID 2 it has a process's usual semantics."""
    program = os.fork()
    if program == 0:
        try:
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # not inherited over fork
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            os.execv(argv[0], argv)
        except BaseException as error:  # noqa: B036 - the forked child must never return
            print(f"sandbox: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        os._exit(EXIT_EXEC_FAILED)
    return _wait_forwarding_signals(program, reap_all=True)


def _write_report(descriptor: int, report: Report) -> None:
    """Best effort: whoever started us may be gone (a controller killed mid-start), and a
    server must outlive it (the next controller adopts it)."""
    try:
        with os.fdopen(descriptor, "w") as out:
            json.dump(report.__dict__, out)
    except OSError:
        pass


def _wait_forwarding_signals(child: int, *, reap_all: bool = False) -> int:
    """Pass SIGTERM, SIGINT and SIGHUP on to ``child`` until it exits; its exit status.
    ``reap_all`` (an init): also reap whatever else ends in the namespace."""
    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # any held back arrive now
    while True:
        try:
            pid, status = os.waitpid(-1 if reap_all else child, 0)
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def _write(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


if __name__ == "__main__":
    status = main(sys.argv)
    sys.exit(status if status >= 0 else 128 - status)  # killed by a signal: 128 + its number
