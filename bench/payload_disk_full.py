"""``make bench``: ``greenbutton serve`` with its payload store's disk full vs not full.

Usage (as root: it mounts a tmpfs): ``.venv/bin/python bench/payload_disk_full.py
[--rounds 4] [--duration 15] [--write docs/performance.md]``.

Logs a LogisticRegression on sklearn's digits with :func:`greenbutton.log_model` (so the
served version has monitors and a payload log), then starts three ``greenbutton serve``
processes with their defaults, all up at once: one whose payload store
(``GREENBUTTON_MONITORING__PAYLOAD_STORE_URI``) is in an ordinary folder, one whose store is
on a 4 MiB tmpfs, and one whose store and ``TMPDIR`` (where its workers share their
``/metrics``) are on another 4 MiB tmpfs. Each is warmed up (its store created and
written), then the tmpfs mounts are filled to their last byte, and the servers are driven
in turn with wrk (closed loop, 1 thread, c8, one-row ``dataframe_split`` on
``/invocations``), ``--rounds`` rounds of ``--duration`` seconds each, the order reversed
every other round. Every 0.5 s during the loads the bench reads the RSS of the server and
its workers (``/proc/PID/status`` ``VmRSS``, summed) and scrapes ``/metrics``
(``greenbutton_payload_dropped_total``, ``greenbutton_payload_buffer_bytes``).
Reported per server: requests, errors (wrk's non-2xx answers / those and its socket
errors: timeouts, resets), p50 and p99
(median of the rounds), RSS before the first load / peak / after the last, the drop count
and the buffer's fill, the time from the server's first load to the first nonzero drop
count, and the requests its store holds at the end; then each full one / the normal one.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import drift_power
import mlflow
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.serving_bench import (  # noqa: E402
    check,
    median,
    running,
    tree_cpu_s,
    tree_rss_mb,
    wrk,
)

TMPFS_SIZE = "4m"
TMPFS_LABEL = "4 MiB"
CONNECTIONS = 8
SAMPLE_INTERVAL_S = 0.5
SERVERS = ("normal", "full", "full-tmp")
"""The payload store in a folder; on a full tmpfs; on a full tmpfs that is also the
server's ``TMPDIR`` (where its workers share their ``/metrics``)."""
LABELS = {"normal": "not full", "full": "full",
          "full-tmp": "full, and the server's `TMPDIR` on it"}


class Classifier(greenbutton.Model):  # pickled by value (defined in __main__)
    """A scikit-learn classifier as a pyfunc model."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict(model_input.to_numpy())


def register(home: Path) -> tuple[str, str]:
    """Log the model as ``lr`` version 1 in ``home``; the tracking URI and a one-row body."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    data = load_digits()
    frame = pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(64)])
    model = Classifier(LogisticRegression(max_iter=500).fit(frame.to_numpy(), data.target))
    settings = Settings(home=home, mlflow={"tracking_uri": uri})  # type: ignore[arg-type]
    greenbutton.log_model(model, "lr", reference_data=frame, settings=settings,
                          pip_requirements=["scikit-learn", "pandas"])
    return uri, json.dumps({"dataframe_split": frame[:1].to_dict(orient="split")})


@contextlib.contextmanager
def tmpfs(folder: Path) -> Any:
    """A ``TMPFS_SIZE`` tmpfs mounted on ``folder`` (exits the bench if it cannot be)."""
    folder.mkdir()
    if os.geteuid() != 0:
        sys.exit("payload_disk_full.py mounts a tmpfs to fill: run it as root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        sys.exit(f"cannot mount a tmpfs on {folder}: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def fill(folder: Path) -> int:
    """Write zeros into ``folder`` until its file system is full; the bytes written."""
    written = 0
    with (folder / "filler").open("wb", buffering=0) as filler:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    written += filler.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    status = os.statvfs(folder)
    if status.f_bavail != 0:
        sys.exit(f"{folder} still has {status.f_bavail} free blocks after filling it")
    return written


def payload_metrics(port: int) -> tuple[float, float]:
    """``/metrics``: payload records dropped (all versions) and the buffer's bytes."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    dropped = held = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "greenbutton_payload_dropped":
            dropped = sum(s.value for s in family.samples if s.name.endswith("_total"))
        elif family.name == "greenbutton_payload_buffer_bytes":
            held = sum(s.value for s in family.samples)
    return dropped, held


class Observer:
    """Samples one server's RSS and payload metrics while it is under load."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.rss_start_mb = tree_rss_mb(pid)
        self.rss_peak_mb = self.rss_start_mb
        self.rss_end_mb = self.rss_start_mb
        self.dropped = self.held_peak = self.held_end = 0.0
        self.loaded_s = 0.0
        """Seconds of load so far (the rounds run back to back for this server's clock)."""
        self.first_drop_s: float | None = None
        self.rss_at_first_drop_mb: float | None = None
        self.cpu_s = 0.0
        """CPU seconds of the server and its workers during the loads."""
        self.scrape_errors = 0

    def sample(self, round_started: float) -> None:
        rss = tree_rss_mb(self.pid)
        self.rss_peak_mb, self.rss_end_mb = max(self.rss_peak_mb, rss), rss
        try:
            self.dropped, self.held_end = payload_metrics(self.port)
        except OSError:
            self.scrape_errors += 1
            return
        self.held_peak = max(self.held_peak, self.held_end)
        if self.dropped > 0 and self.first_drop_s is None:
            self.first_drop_s = self.loaded_s + time.monotonic() - round_started
            self.rss_at_first_drop_mb = rss

    def drive(self, url: str, body: str, duration_s: int, work: Path) -> dict[str, Any]:
        """One wrk run on ``url``, sampled every ``SAMPLE_INTERVAL_S`` meanwhile."""
        done = threading.Event()
        started, cpu_before = time.monotonic(), tree_cpu_s(self.pid)

        def watch() -> None:
            while not done.wait(SAMPLE_INTERVAL_S):
                self.sample(started)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = wrk(url, body, CONNECTIONS, duration_s, work)
        finally:
            done.set()
            watcher.join()
        self.cpu_s += tree_cpu_s(self.pid) - cpu_before
        self.sample(started)
        self.loaded_s += time.monotonic() - started
        return result


def logged_requests(database: Path) -> int:
    """Requests the payload store at ``database`` holds (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM gb_payload_requests").fetchone()[0])


def measure(work: Path, rounds: int, duration_s: int) -> dict[str, dict[str, Any]]:
    """The servers up at once, the full ones' tmpfs filled after warm-up, driven in turn."""
    uri, body = register(work)
    py = sys.executable
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as mounts:
        folders = {"normal": work / "normal",
                   **{name: mounts.enter_context(tmpfs(work / name)) for name in SERVERS[1:]}}
        with contextlib.ExitStack() as stack:
            up = {}
            for name in SERVERS:
                env = {"GREENBUTTON_HOME": str(work), "GREENBUTTON_MLFLOW__TRACKING_URI": uri,
                       "GREENBUTTON_MONITORING__PAYLOAD_STORE_URI":
                           f"sqlite:///{folders[name] / 'payloads.db'}"}
                if name == "full-tmp":  # the workers' shared /metrics files there too
                    env["TMPDIR"] = str(folders[name])
                argv = [py, "-m", "greenbutton", "serve", "models:/lr/1", "--port", "{port}"]
                up[name] = stack.enter_context(running((argv, env, "/health/ready")))
            for name in SERVERS:  # the store exists and has been written
                wrk(f"http://127.0.0.1:{up[name][1]}/invocations", body, CONNECTIONS, 2, work)
            time.sleep(1.0)  # the last flush
            for name in SERVERS[1:]:
                filled = fill(folders[name])
                print(f"{folders[name]}: 0 blocks free ({filled} bytes of filler)", flush=True)
            observers = {name: Observer(up[name][0].pid, up[name][1]) for name in SERVERS}
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
            for round_ in range(rounds):
                for name in SERVERS if round_ % 2 == 0 else SERVERS[::-1]:
                    url = f"http://127.0.0.1:{up[name][1]}/invocations"
                    runs[name].append(observers[name].drive(url, body, duration_s, work))
                    print(name, runs[name][-1], flush=True)
            for name in SERVERS:
                check(f"http://127.0.0.1:{up[name][1]}/invocations", body)  # still 200
                results[name] = summarise(runs[name], observers[name])
        for name in SERVERS:
            results[name]["logged"] = logged_requests(folders[name] / "payloads.db")
    return results


def summarise(runs: list[dict[str, Any]], observer: Observer) -> dict[str, Any]:
    return {"requests": sum(r["requests"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "rps": median([r["rps"] for r in runs]),
            "p50": median([r["p50"] for r in runs]), "p99": median([r["p99"] for r in runs]),
            "p99_max": max(r["p99"] for r in runs),
            "rss_start": observer.rss_start_mb, "rss_peak": observer.rss_peak_mb,
            "rss_end": observer.rss_end_mb, "rss_first_drop": observer.rss_at_first_drop_mb,
            "cpu_us": observer.cpu_s / max(1, sum(r["requests"] for r in runs)) * 1e6,
            "dropped": observer.dropped,
            "held_peak": observer.held_peak, "held_end": observer.held_end,
            "first_drop_s": observer.first_drop_s, "scrape_errors": observer.scrape_errors}


def render(results: dict[str, dict[str, Any]], rounds: int, duration_s: int) -> str:
    lines = [f"{rounds} rounds of {duration_s} s per server, c{CONNECTIONS}, all servers up, "
             "the order reversed every other round; p50 / p99: median of the rounds' (highest "
             "p99 in brackets); CPU: the server and its workers, µs per request; RSS: the "
             "server and its workers, before the first load / peak / after the last, and when "
             "the first drop was seen; buffer: `greenbutton_payload_buffer_bytes` (largest "
             "worker's), peak and at the end; dropped: `greenbutton_payload_dropped_total` in "
             "the last scrape; first drop: seconds of load before "
             "`greenbutton_payload_dropped_total` was first nonzero on `/metrics` (scraped "
             "every 0.5 s); /metrics failures: scrapes that did not answer 200.", "",
             "| payload store's disk | requests | non-2xx / all errors | req/s | p50 ms | "
             "p99 ms | CPU µs | RSS start / peak / end MB | RSS at first drop MB | dropped | "
             "buffer peak / end MiB | first drop s | requests in the store | "
             "/metrics failures |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in SERVERS:
        r = results[name]
        first = "none" if r["first_drop_s"] is None else f"{r['first_drop_s']:.1f}"
        at_drop = "–" if r["rss_first_drop"] is None else f"{r['rss_first_drop']:.0f}"
        lines.append(
            f"| {LABELS[name]} | {r['requests']} | {r['non_2xx']} / {r['errors']} | "
            f"{r['rps']:.0f} | {r['p50']:.2f} | "
            f"{r['p99']:.2f} ({r['p99_max']:.2f}) | {r['cpu_us']:.0f} | {r['rss_start']:.0f} / "
            f"{r['rss_peak']:.0f} / {r['rss_end']:.0f} | {at_drop} | {r['dropped']:.0f} | "
            f"{r['held_peak'] / 2**20:.1f} / "
            f"{r['held_end'] / 2**20:.1f} | {first} | {r['logged']} | {r['scrape_errors']} |")
    normal = results["normal"]
    lines += ["", "| measure | " + " | ".join(f"{LABELS[n]} / not full" for n in SERVERS[1:])
              + " |", "|---|" + "---|" * (len(SERVERS) - 1)]
    for label, key in (("req/s", "rps"), ("p50", "p50"), ("p99", "p99"), ("CPU per request",
                       "cpu_us"), ("peak RSS", "rss_peak")):
        lines.append(f"| {label} | " + " | ".join(
            f"{results[n][key] / normal[key]:.2f}×" if normal[key] else "–" for n in SERVERS[1:])
            + " |")
    growth = {n: results[n]["rss_peak"] - results[n]["rss_start"] for n in SERVERS}
    lines.append("| RSS growth (peak − start) | " + " | ".join(
        f"{growth[n]:.0f} MB / {growth['normal']:.0f} MB" for n in SERVERS[1:]) + " |")
    return "\n".join(lines)


def write_section(path: Path, table: str) -> None:
    """Between this bench's markers; the first time, before the controller's section (the
    sections written from their heading to the next one stay last)."""
    text = (f"## Serving with the payload store's disk full (issue 24)\n\n"
            f"Measured with `make bench` (as root: `.venv/bin/python "
            f"bench/payload_disk_full.py --write docs/performance.md`; a LogisticRegression "
            f"on digits logged with monitors, `greenbutton serve` with its defaults, the "
            f"payload store in a folder vs on a {TMPFS_LABEL} tmpfs filled to its last byte "
            f"after warm-up (the third server's `TMPDIR` too); wrk, 1 thread, closed loop, "
            f"one-row `dataframe_split` on `/invocations`):\n\n{table}")
    drift_power.write_section(path, text, "<!-- payload-disk-full:begin -->",
                              "<!-- payload-disk-full:end -->", before="## Controller")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds per server (the order reversed every other round)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")
    if os.geteuid() != 0:
        sys.exit("payload_disk_full.py mounts a tmpfs to fill: run it as root")
    work = Path(tempfile.mkdtemp(prefix="gb-disk-full-bench-"))
    try:
        table = render(measure(work, args.rounds, args.duration), args.rounds, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    table += f"\n\nLoad average (1/5/15 min) at the end of the run: {load}."
    print(table)
    if args.write:
        write_section(args.write, table)


if __name__ == "__main__":
    main()
