"""How much memory one serving worker of a model version takes, measured, and the container
memory a pod of several workers needs.

``greenbutton build`` starts the build context's own entrypoint here, with one worker, on a
loopback port; once ``/health/ready`` answers (the model loaded and warmed up), the
process's peak resident set (``VmHWM``) is one worker's memory. It is kept as the version's
MLflow tag ``greenbutton.worker_rss_bytes``, and the generated manifests size the memory
limit from it. Usage::

    rss = measure_worker_rss(context.path, "wine", "3")     # Linux only
    limit = memory_limit_bytes(rss, workers=2, buffer_bytes=64 << 20)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from ...errors import NotReady

RSS_TAG = "greenbutton.worker_rss_bytes"
"""Model-version tag holding one worker's measured peak resident memory (bytes)."""
HEADROOM = 1.25
"""A worker's memory grows with its requests (batches, explanations) past the warm-up's."""
SUPERVISOR_BYTES = 160 * 1024 * 1024
"""The supervisor of several workers holds the model too (they fork from it)."""


def memory_limit_bytes(worker_rss: int, workers: int, buffer_bytes: int) -> int:
    """Container memory for ``workers`` workers of ``worker_rss`` each, every worker's
    payload buffer at its bound, and the supervisor when there are several."""
    per_worker = worker_rss * HEADROOM + buffer_bytes
    return int(workers * per_worker + (SUPERVISOR_BYTES + worker_rss if workers > 1 else 0))


def as_quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity in whole MiB, rounded up (``"1536Mi"``)."""
    return f"{-(-size // (1024 * 1024))}Mi"


def measure_worker_rss(context: Path, name: str, version: str | None, *,
                       timeout_s: float = 180.0) -> int:
    """Peak resident bytes of one worker serving the context's model, ready and warmed up.

    ``NotReady`` when it does not become ready in time (the model's requirements are not
    installed here, say) or where ``/proc`` is missing."""
    from .docker import serve_argv  # MLflow: only when measuring

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    argv = [str(Path(sys.executable).parent / "greenbutton"), *serve_argv(name, version)[1:],
            "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryDirectory(prefix="greenbutton-measure-") as home:
        env = {**os.environ, "GREENBUTTON_HOME": home,  # its own payload store, monitors on
               "GREENBUTTON_SERVING__WORKERS": "1",
               "GREENBUTTON_SERVING__MODEL_DIR": str(context / "model")}
        process = subprocess.Popen(argv, cwd=context, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            _wait_ready(process, f"http://127.0.0.1:{port}/health/ready", timeout_s)
            return _peak_rss(process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotReady(f"the model did not load here (exit {process.returncode}); is "
                           "its environment installed?")
        try:
            with urlopen(url, timeout=2) as answer:  # noqa: S310 (loopback, our own port)
                if answer.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(0.2)
    raise NotReady(f"the model was not ready within {timeout_s:g} s")


def _peak_rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as error:
        raise NotReady(f"cannot read the memory of process {pid}: {error}") from None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise NotReady("no VmHWM in /proc/<pid>/status")
