"""Where monitoring's serving cost goes: several server variants, measured side by side.

Usage::

    .venv/bin/python bench/monitoring_variants.py --load predict1 --rounds 12 \\
        --variant nodrift=GREENBUTTON_MONITORING__DRIFT_INTERVAL_S=100000 \\
        --variant flush1s=GREENBUTTON_MONITORING__FLUSH_INTERVAL_S=1.0

Not part of ``make bench``: a diagnostic for attributing the "monitoring on / off" figure of
``bench/serving_bench.py``. It registers the same models and serves one of them: ``--model
lr``, the LogisticRegression (one-row calls, on the event loop), or ``--model rf``, the
100-tree random forest, which batches concurrent requests in a worker thread as it declares
(that benchmark's "rf batched"). It starts every variant at once (monitoring on with the
default settings, each ``--variant`` as monitoring on with its environment settings on top,
and monitoring off as the baseline), each with its own payload store, and then drives them
in turn with short wrk runs, rotating the order every round. Each run of a variant is paired
with the baseline's run of the same round, a few seconds apart. For each variant it prints
the median of the paired throughput and CPU ratios with their 95 % confidence intervals,
and, per request, the CPU of the request loops (each worker's main thread) and of the other
threads, and how often the request loops were preempted (involuntary context switches) and
the other threads blocked (voluntary ones).
Those last figures separate work the request loop does from work that competes with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# as the package path the servers (started in the repository root) import its models from
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_bench import (  # noqa: E402
    bodies,
    median,
    median_interval,
    path_of,
    process_tree,
    register,
    running,
    wrk,
)

BASELINE = "off"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Threads:
    """Counters of a server's threads, summed: main threads (the workers' request loops, and
    the supervisor's, which does next to nothing under load) and all the others."""

    main_cpu_s: float
    other_cpu_s: float
    main_preempted: int
    other_blocked: int


Counters = dict[tuple[int, int], tuple[bool, float, int, int]]
"""(pid, thread id) → (is the main thread, CPU seconds, voluntary and involuntary switches)."""


def counters_of(root: int) -> Counters:
    """The counters of every thread in ``root``'s process tree now."""
    found: Counters = {}
    for pid in process_tree(root):
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                status = (task / "status").read_text()
            except OSError:
                continue
            found[(pid, int(task.name))] = (
                int(task.name) == pid,
                (int(fields[11]) + int(fields[12])) / TICKS_PER_S,  # utime + stime
                _field(status, "voluntary_ctxt_switches"),
                _field(status, "nonvoluntary_ctxt_switches"))
    return found


def spent(before: Counters, after: Counters) -> Threads:
    """What the threads alive at the end did in between (a thread that ended is left out;
    one that started is counted from its start)."""
    main_cpu = other_cpu = 0.0
    preempted = blocked = 0
    for key, (is_main, cpu_s, voluntary, involuntary) in after.items():
        _, cpu_s0, voluntary0, involuntary0 = before.get(key, (is_main, 0.0, 0, 0))
        if is_main:
            main_cpu += cpu_s - cpu_s0
            preempted += involuntary - involuntary0
        else:
            other_cpu += cpu_s - cpu_s0
            blocked += voluntary - voluntary0
    return Threads(main_cpu, other_cpu, preempted, blocked)


def _field(status: str, name: str) -> int:
    found = re.search(rf"^{name}:\s+(\d+)", status, flags=re.MULTILINE)
    return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class Run:
    rps: float
    requests: int
    threads: Threads

    def per_request(self, value: float) -> float:
        return value / self.requests if self.requests else 0.0

    @property
    def cpu_us(self) -> float:
        return self.per_request(self.threads.main_cpu_s + self.threads.other_cpu_s) * 1e6


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name=KEY=VALUE[,KEY=VALUE…]`` as (name, environment)."""
    name, _, settings = text.partition("=")
    if not name or not settings:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=KEY=VALUE[,…]")
    env = {}
    for item in settings.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--variant {text!r}: {item!r} is not KEY=VALUE")
        env[key] = value
    if name in ("on", BASELINE):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: {name!r} is taken")
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="predict1", choices=["split1", "predict1", "inputs1"],
                        help="request body: one digits row to /invocations (split1, inputs1) "
                             "or to /predict (predict1)")
    parser.add_argument("--model", default="lr", choices=["lr", "rf"],
                        help="the LogisticRegression (default) or the 100-tree random forest")
    parser.add_argument("--rounds", type=int, default=12, help="runs of each variant")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[],
                        metavar="NAME=KEY=VALUE[,KEY=VALUE…]",
                        help="monitoring on with these environment settings (repeatable)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")
    if args.rounds < 1 or args.seconds < 1:
        sys.exit("--rounds and --seconds must be at least 1")
    names = [name for name, _ in args.variant]
    if len(set(names)) < len(names):
        sys.exit(f"--variant: each variant needs a name of its own (got {', '.join(names)})")
    work = Path(tempfile.mkdtemp(prefix="gb-variants-"))
    try:
        print(measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> str:
    uri, frame = register(work)
    body = bodies(frame)[args.load]
    home = {"GREENBUTTON_HOME": str(work), "GREENBUTTON_MLFLOW__TRACKING_URI": uri}
    variants = {"on": {}, **dict(args.variant),
                BASELINE: {"GREENBUTTON_MONITORING__IS_ENABLED": "false"}}
    argv = [sys.executable, "-m", "greenbutton", "serve", f"models:/{args.model}/1", "--port",
            "{port}"]
    names = list(variants)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        up = {}
        for name, env in variants.items():
            store = f"sqlite:///{work / f'payload-{name}.db'}"  # no variant waits on another
            env = {**home, "GREENBUTTON_MONITORING__PAYLOAD_STORE_URI": store, **env}
            up[name] = stack.enter_context(running((argv, env, "/health/ready")))
        for _, port, _ in up.values():  # warm up
            wrk(f"http://127.0.0.1:{port}{path_of(args.load)}", body, 8, 1, work)
        for round_ in range(args.rounds):
            turn = round_ % len(names)
            order = names[turn:] + names[:turn]
            for name in order if (round_ // len(names)) % 2 == 0 else order[::-1]:
                process, port, _ = up[name]
                before = counters_of(process.pid)
                result = wrk(f"http://127.0.0.1:{port}{path_of(args.load)}", body, 8,
                             args.seconds, work)
                runs[name].append(Run(result["rps"], result["requests"],
                                      spent(before, counters_of(process.pid))))
    return render(args, runs)


def render(args: argparse.Namespace, runs: dict[str, list[Run]]) -> str:
    base = runs[BASELINE]
    lines = [f"{args.model}, {path_of(args.load)}, {args.rounds} rounds of {args.seconds} s runs "
             f"at c8; ratios are paired with the {BASELINE!r} run of the same round (median, "
             "95 % interval); per request: CPU of the request loops and of other threads, "
             "preemptions of the request loops, blocks of other threads", "",
             "| variant | req/s | throughput ratio | CPU ratio | loop CPU µs | other CPU µs | "
             "loop preempted | others blocked |", "|---|---|---|---|---|---|---|---|"]
    for name, own in runs.items():
        pairs = [(a, b) for a, b in zip(own, base, strict=True) if b.rps and b.cpu_us]
        rps = [a.rps / b.rps for a, b in pairs]
        cpu = [a.cpu_us / b.cpu_us for a, b in pairs]
        (rps_low, rps_high), (cpu_low, cpu_high) = median_interval(rps), median_interval(cpu)
        lines.append(
            f"| {name} | {median([r.rps for r in own]):.0f} | {median(rps):.3f} "
            f"({rps_low:.3f}–{rps_high:.3f}) | {median(cpu):.3f} ({cpu_low:.3f}–{cpu_high:.3f})"
            f" | {median([r.per_request(r.threads.main_cpu_s) * 1e6 for r in own]):.0f}"
            f" | {median([r.per_request(r.threads.other_cpu_s) * 1e6 for r in own]):.0f}"
            f" | {median([r.per_request(r.threads.main_preempted) for r in own]):.2f}"
            f" | {median([r.per_request(r.threads.other_blocked) for r in own]):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
