"""The supervisor without pidfds (macOS, old kernels): it polls for children that exited
(and reports each to ``on_exit``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUPERVISE_WITHOUT_PIDFDS = """
import os, socket, sys, time
from pathlib import Path
from greenbutton.dataplane import workers

workers.HAS_PIDFD = False
starts = Path(sys.argv[1])

def serve(balancer):
    with starts.open("a") as log:
        log.write(f"{os.getpid()}\\n")
    if len(starts.read_text().split()) == 1:
        os._exit(9)  # the first worker dies: it must be replaced
    time.sleep(60)  # the replacement serves until SIGTERM (default action: exit)
    return 0

def on_exit(pid):
    with Path(sys.argv[2]).open("a") as log:
        log.write(f"{pid}\\n")

with socket.create_server(("127.0.0.1", 0)) as sock:
    sys.exit(workers.Supervisor(serve, sock, 1, shutdown_timeout_s=1, on_exit=on_exit).run())
"""


@pytest.mark.slow
def test_supervisor_without_pidfds_replaces_a_dead_worker_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    starts.touch()
    exits = tmp_path / "exits"
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISE_WITHOUT_PIDFDS, str(starts),
                                   str(exits)])
    try:
        deadline = time.monotonic() + 20
        while len(starts.read_text().split()) < 2:
            assert time.monotonic() < deadline, "the dead worker was never replaced"
            assert supervisor.poll() is None, "the supervisor exited"
            time.sleep(0.05)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
    finally:
        supervisor.kill()
        supervisor.wait()
    first, replacement = (int(pid) for pid in starts.read_text().split())
    assert first != replacement
    assert exits.read_text().split() == [str(first), str(replacement)]  # each once reaped
