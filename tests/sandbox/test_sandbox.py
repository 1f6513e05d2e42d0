"""The sandbox against a hostile program: what it can see, reach, keep and undo."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenbutton.config import Settings
from greenbutton.sandbox.policy import policy_for
from greenbutton.sandbox.runner import Sandbox, SandboxRun

SECRET = f"gb_secret-{uuid.uuid4().hex}"

PROBE = r"""
import ctypes, json, os, socket, sys
job = json.loads(sys.stdin.read())
found = {"uid": os.getuid(), "cwd": os.getcwd(),
         "env": sorted(k for k in os.environ if not k.startswith(("LANG", "LC_")))}
def attempt(name, action):
    try:
        found[name] = action()
    except Exception as error:
        found[name] = "refused: " + type(error).__name__
attempt("token", lambda: open(job["token"]).read())
attempt("store_write", lambda: open(job["store"], "a").write("x") and "wrote")
attempt("home_listing", lambda: os.listdir(job["home"]))
attempt("cwd_listing", lambda: os.listdir(job["parent_cwd"]))
attempt("given", lambda: open("given.txt").read())
def connect():
    with socket.create_connection(("127.0.0.1", job["port"]), timeout=2):
        return "connected"
attempt("socket", connect)
def environ_scan():
    hits = []
    for pid in os.listdir("/proc"):
        try:
            if job["secret"].encode() in open(f"/proc/{pid}/environ", "rb").read():
                hits.append(pid)
        except OSError:
            pass
    return hits
attempt("environ_hits", environ_scan)
attempt("pids_seen", lambda: len([p for p in os.listdir("/proc") if p.isdigit()]))
def unmount():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(job["home"].encode(), 2) != 0:
        raise PermissionError(os.strerror(ctypes.get_errno()))
    return "unmounted"
attempt("umount_home", unmount)
attempt("escape_write", lambda: open(job["escape"], "w").write("x") and "wrote")
attempt("import_greenbutton", lambda: __import__("greenbutton").__version__)
print("noise on stdout, not the answer")
with os.fdopen(int(sys.argv[-1]), "w") as out:
    json.dump(found, out)
"""


@pytest.fixture
def platform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A platform home holding a token and a store, and a secret in our environment."""
    settings = Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir(mode=0o700)
    (settings.home / "admin.token").write_text(SECRET)
    (settings.home / "greenbutton.db").write_text("store")
    monkeypatch.setenv("GREENBUTTON_TOKEN", SECRET)
    yield settings


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on loopback that accepts connections (as the control plane's would)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


def run_probe(settings: Settings, port: int, tmp_path: Path) -> tuple[dict[str, Any], SandboxRun]:
    sandbox = Sandbox(policy_for(settings))
    escape = tmp_path / f"escape-{uuid.uuid4().hex}"
    job = {"token": str(settings.home / "admin.token"), "store": str(settings.home /
           "greenbutton.db"), "home": str(settings.home), "parent_cwd": os.getcwd(),
           "port": port, "secret": SECRET, "escape": str(escape)}
    with sandbox.workdir() as work:
        (work / "given.txt").write_text("for the program")
        done = sandbox.run(["-c", PROBE], stdin=json.dumps(job).encode(), workdir=work,
                           timeout_s=60)
    assert done.failure() is None, done.failure()
    assert not escape.exists()
    return json.loads(done.output), done


@pytest.fixture
def probed(platform_home: Settings, listener: int,
           tmp_path: Path) -> tuple[dict[str, Any], SandboxRun]:
    return run_probe(platform_home, listener, tmp_path)


def test_program_sees_no_platform_variable(probed: tuple[dict[str, Any], SandboxRun]) -> None:
    env = probed[0]["env"]
    assert not [k for k in env if k.startswith(("GREENBUTTON", "MLFLOW", "AWS"))], env


def test_program_cannot_read_the_admin_token(probed: tuple[dict[str, Any], SandboxRun]) -> None:
    assert probed[0]["token"].startswith("refused")


def test_program_cannot_write_the_store(platform_home: Settings,
                                        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    assert probed[0]["store_write"].startswith("refused")
    assert (platform_home.home / "greenbutton.db").read_text() == "store"


def test_program_sees_neither_the_home_nor_the_current_folder(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    found = probed[0]
    assert found["home_listing"] in ([], "refused: FileNotFoundError",
                                     "refused: PermissionError")
    # only the empty mount points of the folders Python needs (.venv, src, tests) remain
    assert not {"README.md", "pyproject.toml", ".git"} & set(found["cwd_listing"])


def test_program_cannot_reach_a_loopback_listener(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    assert probed[0]["socket"].startswith("refused")


def test_program_cannot_read_other_processes_environment(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    assert probed[0]["environ_hits"] == []


def test_program_cannot_undo_the_covering_mounts(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    assert probed[0]["umount_home"].startswith("refused")


def test_program_runs_in_its_work_folder_with_what_it_was_given(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    found, done = probed
    assert found["given"] == "for the program"
    assert found["import_greenbutton"] == "0.1.0"
    assert "noise on stdout" in done.log_tail


def test_isolation_is_reported_before_the_program_runs(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    isolation = probed[1].isolation
    assert isolation is not None and isolation.is_confined
    assert (isolation.network, isolation.filesystem, isolation.pids) == (
        "isolated", "hidden", "isolated")
    assert probed[0]["pids_seen"] <= 2


def test_root_runs_the_program_as_the_unprivileged_user(
        probed: tuple[dict[str, Any], SandboxRun]) -> None:
    if os.geteuid() != 0:
        pytest.skip("greenbutton runs as an ordinary user here")
    assert probed[0]["uid"] == 65534 and probed[1].isolation.uid == 65534  # type: ignore[union-attr]


def test_a_program_past_its_time_is_killed(platform_home: Settings) -> None:
    sandbox = Sandbox(policy_for(platform_home))
    started = time.monotonic()
    with sandbox.workdir() as work:
        done = sandbox.run(["-c", "import time; time.sleep(60)"], stdin=b"", workdir=work,
                           timeout_s=1)
    assert done.is_timed_out and time.monotonic() - started < 15


def test_an_answer_over_the_limit_fails_the_run(platform_home: Settings) -> None:
    policy = policy_for(platform_home)
    sandbox = Sandbox(type(policy)(**{**policy.__dict__, "max_output_bytes": 1000}))
    flood = "import os, sys\nwith os.fdopen(int(sys.argv[-1]), 'wb') as o: o.write(b'x' * 10**6)"
    with sandbox.workdir() as work:
        done = sandbox.run(["-c", flood], stdin=b"", workdir=work, timeout_s=60)
    assert done.is_output_too_large and done.failure() is not None


def test_a_platform_with_a_private_umask_still_runs_programs(platform_home: Settings) -> None:
    previous = os.umask(0o077)  # as `greenbutton up` runs
    try:
        sandbox = Sandbox(policy_for(platform_home))
        with sandbox.workdir() as work:
            done = sandbox.run(["-c", "import os, sys; os.write(int(sys.argv[-1]), b'ok')"],
                               stdin=b"", workdir=work, timeout_s=60)
    finally:
        os.umask(previous)
    assert done.failure() is None and done.output == b"ok", done.log_tail


def test_a_hidden_platform_folder_given_read_write_is_the_real_one(
        platform_home: Settings, tmp_path: Path) -> None:
    """A restarted ``greenbutton up`` finds the payload store's folder already there: the
    policy hides it (a platform folder), and serving processes are given it read-write; they
    must see and write the real folder, not an empty cover."""
    folder = platform_home.home / "monitoring"
    folder.mkdir()
    (folder / "before.txt").write_text("from the last run")
    sandbox = Sandbox(policy_for(platform_home))
    assert str(folder.resolve()) in sandbox.policy.hidden
    if os.geteuid() == 0:  # as the local target gives it to the sandbox's user
        for path in (folder, folder / "before.txt"):
            os.chown(path, sandbox.policy.uid, sandbox.policy.gid)
    program = ("import pathlib, sys; f = pathlib.Path(sys.argv[1]); "
               "(f / 'after.txt').write_text((f / 'before.txt').read_text())")
    with (tmp_path / "out.log").open("wb") as out:
        process = sandbox.spawn([sys.executable, "-c", program, str(folder)], env={},
                                pass_fds=(), output=out.fileno(), writable=[folder])
    assert process.wait(timeout=60) == 0, (tmp_path / "out.log").read_text()
    assert (folder / "after.txt").read_text() == "from the last run"


def test_a_program_stopped_before_it_handles_sigterm_still_stops(
        platform_home: Settings, tmp_path: Path) -> None:
    """The program is the init of its PID namespace, and the kernel drops signals an init has
    no handler for: a serving process stopped while it still imports (no SIGTERM handler yet)
    would run on, as nobody's child, once whoever stopped it gave up waiting."""
    stop_after(platform_home, tmp_path, 1.0)  # the program runs, with no handler of its own


@pytest.mark.parametrize("after_s", [0.0, 0.02, 0.05, 0.1, 0.2])
def test_a_program_stopped_while_its_sandbox_is_set_up_still_stops(
        platform_home: Settings, tmp_path: Path, after_s: float) -> None:
    """A stop can come at any moment of the set-up (a rollout stops a replica it has just
    started); none may be lost on the way to the program."""
    stop_after(platform_home, tmp_path, after_s)


def stop_after(platform_home: Settings, tmp_path: Path, after_s: float) -> None:
    """Spawn a sandboxed program without a SIGTERM handler, SIGTERM it ``after_s`` later:
    it must have stopped within 10 s (``TimeoutExpired`` otherwise)."""
    sandbox = Sandbox(policy_for(platform_home))
    with (tmp_path / "out.log").open("wb") as out:
        process = sandbox.spawn([sys.executable, "-c", "import time; time.sleep(600)"], env={},
                                pass_fds=(), output=out.fileno())
    try:
        time.sleep(after_s)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
