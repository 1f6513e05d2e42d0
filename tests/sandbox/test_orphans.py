"""A sandboxed run (a gate worker) dies with the process that started it, even on kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

RUNNER = """
import sys
from pathlib import Path
from greenbutton.config import Settings
from greenbutton.sandbox.policy import policy_for
from greenbutton.sandbox.runner import Sandbox
settings = Settings(home=Path(sys.argv[1]), _env_file=None)
sandbox = Sandbox(policy_for(settings))
with sandbox.workdir() as work:
    sandbox.run(["-c", "import time; time.sleep(600)", sys.argv[2]], stdin=b"", workdir=work,
                timeout_s=600)
"""


def pids_with(token: str, *, program_only: bool = False) -> list[int]:
    """Processes whose command line holds ``token`` (only the sandboxed program itself)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if token.encode() not in argv or (program_only and argv[1:3] != [b"-I", b"-c"]):
            continue
        found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill9_of_the_caller_kills_the_sandboxed_run(tmp_path: Path) -> None:
    token = f"gb-orphan-{uuid.uuid4().hex}"
    caller = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "home"), token])
    try:
        assert wait_until(lambda: pids_with(token, program_only=True) != [], 30)
        caller.send_signal(signal.SIGKILL)
        caller.wait(timeout=10)
        assert wait_until(lambda: pids_with(token) == [], 10), "the sandboxed run outlived it"
    finally:
        if caller.poll() is None:
            caller.kill()
        for pid in pids_with(token):
            os.kill(pid, signal.SIGKILL)
