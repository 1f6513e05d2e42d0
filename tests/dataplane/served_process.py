"""``greenbutton serve`` in a child process, on a socket bound here (for tests/dataplane)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import IO

from greenbutton.config import Settings

SERVE_FROM_FD = """
import sys
from greenbutton.config import Settings
from greenbutton.dataplane.process import run
run(Settings(), sys.argv[1], fd=int(sys.argv[2]))
"""


@contextlib.contextmanager
def serving(settings: Settings, model_uri: str, workers: int = 2, *,
            exit_code: int = 0, stderr: IO[bytes] | None = None, through_cli: bool = False
            ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The process serving ``model_uri`` with ``workers`` workers, and its port.

    Leaving the block normally stops it with SIGTERM (unless it has exited) and checks that
    it exits with ``exit_code``; on an error it is killed with its workers (its own process
    group: a worker frozen in a model call would not follow a killed supervisor).
    ``stderr``: where its log goes. ``through_cli``: started as ``greenbutton serve`` (with
    its model prefetch) rather than by calling ``run``.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    env = {**os.environ, **settings.environ(), "GREENBUTTON_SERVING__WORKERS": str(workers)}
    command = (["-m", "greenbutton", "serve", model_uri, "--fd"] if through_cli
               else ["-c", SERVE_FROM_FD, model_uri])
    process = subprocess.Popen(
        [sys.executable, *command, str(listener.fileno())],
        pass_fds=[listener.fileno()], env=env, stderr=stderr, start_new_session=True,
    )
    listener.close()
    try:
        yield process, port
        process.send_signal(signal.SIGTERM)  # (nothing once it has been waited for)
        assert process.wait(timeout=60) == exit_code
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # (its group: nothing left if all went well)
        process.wait()
