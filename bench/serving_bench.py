"""``make bench``: greenbutton serve vs mlflow models serve vs a bare Starlette app, with wrk.

Usage: ``.venv/bin/python bench/serving_bench.py [--duration 5] [--write docs/performance.md]``.
Trains LogisticRegression and a 100-tree RandomForest on sklearn's digits, registers them in
a temporary MLflow store, starts each server as its own process, drives it with wrk (closed
loop, 1 thread) and prints requests/s, p50, p99, errors, cold start and peak RSS; then
measures monitoring on against off (the LogisticRegression on both endpoints, the forest
batched on ``/predict``) with all those servers up, in pairs of short runs, with the
servers' CPU per request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from scipy.stats import binom
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings

ROOT = Path(__file__).resolve().parent.parent
LUA = ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
       'wrk.body = io.open("{}"):read("*a")\n')


class Classifier(greenbutton.Model):  # pickled by value (defined in __main__)
    """A scikit-learn classifier as a pyfunc model; declares batching when ``batch`` > 1."""

    max_batch_size = 1
    max_batch_wait_ms = 2.0

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict(model_input.to_numpy())


class BatchingClassifier(Classifier):
    max_batch_size = 64


def register(home: Path) -> tuple[str, pd.DataFrame]:
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    data = load_digits()
    frame = pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(64)])
    settings = Settings(home=home, mlflow={"tracking_uri": uri})  # type: ignore[arg-type]
    for name, model in (("lr", Classifier(LogisticRegression(max_iter=500))),
                        ("rf", BatchingClassifier(RandomForestClassifier(100, random_state=0)))):
        model.model.fit(frame.to_numpy(), data.target)
        # greenbutton.log_model: the version carries fitted monitors, so "monitoring on"
        # measures outlier scoring, the payload log and drift windows for real
        greenbutton.log_model(model, name, reference_data=frame, settings=settings,
                              pip_requirements=["scikit-learn", "pandas"])
    return uri, frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    argv: list[str], env: dict[str, str], ready_url: str
) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    process = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.monotonic() - started < 120:
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                if response.status == 200:
                    return process, time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{argv} never became ready")


@contextlib.contextmanager
def running(server: tuple[list[str], dict[str, str], str]
            ) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """``server`` (argv, env, ready path) started on a free port: process, port, cold start."""
    argv, env, ready = server
    port = free_port()
    process, cold_s = start([a.format(port=port) for a in argv], env,
                            f"http://127.0.0.1:{port}{ready}")
    try:
        yield process, port, cold_s
    finally:
        process.terminate()
        process.wait(timeout=60)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (those alive now)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_mb(pid: int) -> float:
    total = 0
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError):
            continue
    return total / 1024


def wrk(url: str, body: str, connections: int, duration_s: int, workdir: Path) -> dict[str, Any]:
    payload = workdir / f"body-{abs(hash(body))}.json"
    payload.write_text(body)
    check(url, body)
    script = payload.with_suffix(".lua")
    script.write_text(LUA.format(payload))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", str(script),
            url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, flags=re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses:|timeout|read|write|"
                                            r"connect)\s+(\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": to_ms(lat.get("50", "0ms")), "p99": to_ms(lat.get("99", "0ms")),
            "errors": errors, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "requests": requests}


def check(url: str, body: str) -> None:
    """One request first: a load of error answers would measure nothing."""
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def bodies(frame: pd.DataFrame) -> dict[str, str]:
    one, hundred = frame[:1], frame[:100]
    split = lambda f: json.dumps({"dataframe_split": f.to_dict(orient="split")})  # noqa: E731
    inputs = json.dumps({"inputs": {c: one[c].tolist() for c in one.columns}})
    native = json.dumps({"inputs": one.to_dict(orient="records")})  # greenbutton's /predict
    return {"split1": split(one), "inputs1": inputs, "split100": split(hundred),
            "predict1": native}


def path_of(load: str) -> str:
    """``/predict`` (outlier flags in the response) for the native loads, else ``/invocations``."""
    return "/predict" if load.startswith("predict") else "/invocations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    parser.add_argument("--only", default="", help="run only servers whose name contains this")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")
    work = Path(tempfile.mkdtemp(prefix="gb-serving-bench-"))
    try:
        run_all(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(args: argparse.Namespace, work: Path) -> None:
    """Register the models in ``work``, run every server and load, print (and write) the table."""
    uri, frame = register(work)
    body = bodies(frame)
    gb_env = {"GREENBUTTON_HOME": str(work), "GREENBUTTON_MLFLOW__TRACKING_URI": uri}
    py = sys.executable
    path = f"{Path(py).parent}:{os.environ.get('PATH', '')}"  # mlflow execs `uvicorn`
    bare_env = {"MODEL_PATH": mlflow.artifacts.download_artifacts("models:/lr/1")}
    servers = {  # name: (argv, env, ready path)
        "greenbutton lr": ([py, "-m", "greenbutton", "serve", "models:/lr/1", "--port", "{port}"],
                           gb_env, "/health/ready"),
        "greenbutton lr monitoring-off": (
            [py, "-m", "greenbutton", "serve", "models:/lr/1", "--port", "{port}"],
            {**gb_env, "GREENBUTTON_MONITORING__IS_ENABLED": "false"}, "/health/ready"),
        "mlflow lr": ([py, "-m", "mlflow", "models", "serve", "-m", "models:/lr/1",
                       "--env-manager", "local", "-p", "{port}"],
                      {"MLFLOW_TRACKING_URI": uri, "PATH": path}, "/ping"),
        "bare lr": ([py, "-m", "uvicorn", "bench.serving_bare:app", "--port", "{port}",
                     "--workers", "2", "--http", "httptools", "--loop", "uvloop",
                     "--no-access-log"],
                    bare_env, "/ping"),
        "bare lr h11": ([py, "-m", "uvicorn", "bench.serving_bare:app", "--port", "{port}",
                         "--workers", "2", "--http", "h11", "--loop", "asyncio",
                         "--no-access-log"], bare_env, "/ping"),
        "greenbutton rf batched": ([py, "-m", "greenbutton", "serve", "models:/rf/1", "--port",
                                    "{port}"], gb_env, "/health/ready"),
        "greenbutton rf unbatched": ([py, "-m", "greenbutton", "serve", "models:/rf/1",
                                      "--port", "{port}"],
                                     {**gb_env, "GREENBUTTON_SERVING__MAX_BATCH_SIZE": "1"},
                                     "/health/ready"),
        "greenbutton rf batched monitoring-off": (
            [py, "-m", "greenbutton", "serve", "models:/rf/1", "--port", "{port}"],
            {**gb_env, "GREENBUTTON_MONITORING__IS_ENABLED": "false"}, "/health/ready"),
    }
    loads = {"lr": [("split1", 1), ("split1", 8), ("inputs1", 8), ("split1", 64), ("split100", 8)],
             "rf": [("split1", 8), ("split1", 64)], "bare lr h11": [("split1", 8)],
             # split100 last: its payload log backlog must not spill into another load
             "greenbutton lr": [("split1", 1), ("split1", 8), ("inputs1", 8), ("predict1", 8),
                                ("split1", 64), ("split100", 8)],
             "greenbutton lr monitoring-off": [("split1", 8), ("predict1", 8)],
             "greenbutton rf batched monitoring-off": []}  # only in the on / off pairs
    rows = []
    for name, server in servers.items():
        if args.only not in name or loads.get(name) == []:
            continue
        with running(server) as (process, port, cold_s):
            peak = tree_rss_mb(process.pid)
            for load, connections in loads.get(name, loads[name.split()[1]]):
                result = wrk(f"http://127.0.0.1:{port}{path_of(load)}", body[load], connections,
                             args.duration, work)
                peak = max(peak, tree_rss_mb(process.pid))
                rows.append({"server": name, "load": load, "c": connections, **result,
                             "cold_s": cold_s, "rss_mb": peak})
                print(rows[-1], flush=True)
    pairs = ""
    if not args.only or "greenbutton lr" in args.only:
        pairs = "\n\n" + monitoring_pairs(servers, work, body)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    table = (render(rows) + pairs +
             f"\n\nLoad average (1/5/15 min) at the end of the run: {load}.")
    print(table)
    if args.write:
        write_section(args.write, table)


PAIR_ROUNDS = 16
PAIR_SECONDS = 3
PAIRS = (("greenbutton lr", "greenbutton lr monitoring-off", "split1",
          "LogisticRegression, /invocations, dataframe_split"),
         ("greenbutton lr", "greenbutton lr monitoring-off", "predict1",
          "LogisticRegression, /predict, outlier flags in the response"),
         ("greenbutton rf batched", "greenbutton rf batched monitoring-off", "predict1",
          "100-tree forest, batched, /predict, outlier flags in the response"))
"""(monitoring on, monitoring off, load, label) of each pair of runs."""
COLD_STARTS = 3


def monitoring_pairs(servers: dict[str, Any], work: Path, body: dict[str, str]) -> str:
    """Monitoring on vs off: the servers up at once, driven in turn, in pairs of short runs.

    One on run and one off run far apart in time compare two different moments of a shared
    machine. Here every server of :data:`PAIRS` starts once and is warmed up; then,
    ``PAIR_ROUNDS`` times and for each pair, its on and its off server are each driven for
    ``PAIR_SECONDS``, in alternating order. The two runs of a pair are seconds apart, so each
    pair's on / off ratio compares the servers at one moment; the median of the pairs is the
    measure, with its 95 % confidence interval from order statistics
    (:func:`median_interval`, no assumption about how the ratios spread). The servers stay up
    throughout, so the on servers run as they would in production: drift tests every
    interval, a payload table that grows. Besides requests/s, each run's CPU per request (all
    server processes, ``/proc``) is paired the same way; the p99 / p50 ratio is the median of
    the runs' ratios (one run's p99 rests on a few dozen requests). Cold start (process start
    → ready) is the median of ``COLD_STARTS`` starts of each LogisticRegression server.
    """
    names = list(dict.fromkeys(name for on, off, _, _ in PAIRS for name in (on, off)))
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with contextlib.ExitStack() as stack:
        up = {name: stack.enter_context(running(servers[name])) for name in names}
        for on, off, load, _ in PAIRS:
            for name in (on, off):
                wrk(f"http://127.0.0.1:{up[name][1]}{path_of(load)}", body[load], 8, 1, work)
        for round_ in range(PAIR_ROUNDS):
            for on, off, load, _ in PAIRS:
                for name in (on, off) if round_ % 2 == 0 else (off, on):
                    process, port, _ = up[name]
                    before = tree_cpu_s(process.pid)
                    result = wrk(f"http://127.0.0.1:{port}{path_of(load)}", body[load], 8,
                                 PAIR_SECONDS, work)
                    spent = tree_cpu_s(process.pid) - before
                    requests = result["requests"]
                    results.setdefault((name, load), []).append(
                        (result["rps"], spent / requests * 1e6 if requests else 0.0,
                         result["p99"] / result["p50"] if result["p50"] else 0.0))
    colds = {name: median([cold_start(servers[name]) for _ in range(COLD_STARTS)])
             for name in PAIRS[0][:2]}
    lines = [f"Monitoring on vs off, all servers up, {PAIR_ROUNDS} pairs of {PAIR_SECONDS} s "
             "runs per model and load, c8; medians of the pairs' ratios with their 95 % "
             "confidence interval (CPU: all server processes, µs per request):", "",
             "| model, load | on req/s | off req/s | on / off (target ≥ 0.9×) | on CPU µs | "
             "off CPU µs | CPU added | p99 / p50 on (target ≤ 3×) | p99 / p50 off |",
             "|---|---|---|---|---|---|---|---|---|"]
    for on_name, off_name, load, label in PAIRS:
        on, off = results[(on_name, load)], results[(off_name, load)]
        pairs = [(a, b) for a, b in zip(on, off, strict=True) if b[0] and b[1]]
        rps = [a[0] / b[0] for a, b in pairs]
        cpu = [a[1] / b[1] - 1 for a, b in pairs]
        (rps_low, rps_high), (cpu_low, cpu_high) = median_interval(rps), median_interval(cpu)
        lines.append(
            f"| {label} | {median([r for r, _, _ in on]):.0f} | "
            f"{median([r for r, _, _ in off]):.0f} | **{median(rps):.2f}×** "
            f"({rps_low:.2f}–{rps_high:.2f}) | {median([c for _, c, _ in on]):.0f} | "
            f"{median([c for _, c, _ in off]):.0f} | {100 * median(cpu):+.0f} % "
            f"({100 * cpu_low:+.0f} to {100 * cpu_high:+.0f} %) | "
            f"{median([t for _, _, t in on]):.1f}× | {median([t for _, _, t in off]):.1f}× |")
    lines.append("")
    lines.append("Cold start (process start → ready), median of "
                 f"{COLD_STARTS} starts: " + ", ".join(
                     f"{name} {cold:.2f} s" for name, cold in colds.items()) + " (target ≤ 2 s); "
                 f"importing MLflow's pyfunc and the model's library alone takes "
                 f"{import_floor_s():.2f} s here (median of 3 fresh interpreters, collector "
                 "paused, nothing else).")
    return "\n".join(lines)


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A confidence interval for the median of ``values``, from their order statistics.

    The k-th smallest and k-th largest values bound the median with probability
    1 − 2·P(B < k), B ~ Binomial(n, ½), whatever the values' distribution; k is the largest
    for which that is at least ``level``. With fewer than 6 values no k reaches 95 %: the
    smallest and largest are returned.
    """
    ordered, n = sorted(values), len(values)
    k = 0
    while binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1  # P(B ≤ k - 1) ≤ (1 - level) / 2: the k-th order statistics qualify
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def cold_start(server: tuple[list[str], dict[str, str], str]) -> float:
    """Seconds from starting ``server`` to its first ready answer."""
    with running(server) as (_, _, cold_s):
        return cold_s


FLOOR_IMPORTS = "import gc; gc.disable(); import mlflow.pyfunc, sklearn.linear_model"
"""What any server of the benchmark's models must import before it can load one (with the
collector paused, as ``greenbutton serve`` starts)."""


def import_floor_s(starts: int = 3) -> float:
    """Median wall time of a Python process that only does :data:`FLOOR_IMPORTS`."""
    times = []
    for _ in range(starts):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", FLOOR_IMPORTS], check=True, cwd=ROOT)
        times.append(time.monotonic() - started)
    return median(times)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) of ``pid`` and its descendants."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            continue
    return total


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | load | conc. | req/s | p50 ms | p99 ms | errors | cold start s "
             "| peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['server']} | {r['load']} | {r['c']} | {r['rps']:.0f} | {r['p50']:.2f} "
                     f"| {r['p99']:.2f} | {r['errors']} | {r['cold_s']:.2f} | {r['rss_mb']:.0f} |")
    by = {(r["server"], r["load"], r["c"]): r["rps"] for r in rows}
    ratios = [
        ("greenbutton / mlflow, dataframe_split c8 (target ≥ 10×)",
         ("greenbutton lr", "split1", 8), ("mlflow lr", "split1", 8)),
        ("greenbutton / mlflow, inputs c8 (target ≥ 5×)",
         ("greenbutton lr", "inputs1", 8), ("mlflow lr", "inputs1", 8)),
        ("greenbutton / bare app, dataframe_split c8 (target ≥ 0.7×)",
         ("greenbutton lr", "split1", 8), ("bare lr", "split1", 8)),
        ("monitoring on / off, dataframe_split c8 (target ≥ 0.9×)",
         ("greenbutton lr", "split1", 8), ("greenbutton lr monitoring-off", "split1", 8)),
        ("monitoring on / off, /predict with outlier flags in the response, c8",
         ("greenbutton lr", "predict1", 8), ("greenbutton lr monitoring-off", "predict1", 8)),
        ("bare app httptools / h11, c8",
         ("bare lr", "split1", 8), ("bare lr h11", "split1", 8)),
        ("rf batched / unbatched, c64 (target ≥ 4×)",
         ("greenbutton rf batched", "split1", 64), ("greenbutton rf unbatched", "split1", 64)),
    ]
    lines.append("")
    for label, a, b in ratios:
        if a in by and b in by and by[b]:
            lines.append(f"- {label}: **{by[a] / by[b]:.2f}×**")
    return "\n".join(lines)


def write_section(path: Path, table: str) -> None:
    begin, end = "<!-- serving-bench:begin -->", "<!-- serving-bench:end -->"
    text = path.read_text() if path.exists() else "# Performance\n"
    block = (f"{begin}\n## Serving: greenbutton serve vs mlflow models serve vs bare Starlette "
             f"(issue 3)\n\nMeasured with `make bench` (`.venv/bin/python bench/serving_bench.py "
             f"--write docs/performance.md`; wrk, 1 thread, closed loop, 4-5 s per row; "
             f"`/invocations` unless the load is `predict1`; greenbutton with its defaults: "
             f"one worker per core; each server measured once, one after the other, then "
             f"monitoring on and off again, the LogisticRegression's servers and the batched "
             f"forest's all up, in pairs of short runs):\n\n"
             f"{table}\n{end}")
    if begin in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
