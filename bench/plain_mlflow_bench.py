"""``make bench``: plain MLflow sklearn models, greenbutton serve vs mlflow models serve.

Usage: ``.venv/bin/python bench/plain_mlflow_bench.py [--rounds 3] [--duration 3]
[--write docs/performance.md]``.

A LogisticRegression on 20 features, logged with ``mlflow.sklearn.log_model`` (not
greenbutton.Model) twice: with a NumPy input example (a tensor signature) and with a pandas
one (20 named double columns). For each, ``greenbutton serve`` and ``mlflow models serve``
(both with their defaults) are up at once and driven in turn with wrk (closed loop, 1
thread, c8, one row per request) in every MLflow input format, plus greenbutton's own
``/predict``; ``--rounds`` alternating rounds, so each greenbutton / mlflow ratio compares
the two servers at one moment of a shared machine. Reported: the median ratio of the rounds
with its lowest and highest, errors, and p99 / p50 (median of the runs'). A third server,
``bench/plain_bare.py`` (the estimator behind a bare Starlette app, same worker count), is
driven in the same rounds: the floor. Its ratio to MLflow is the most any Python server of
the model could reach; greenbutton's ratio to it is how close greenbutton is to that floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.serving_bench import median, running, wrk  # noqa: E402

FEATURES = 20
KINDS = ("numpy", "pandas")
"""How each model's input example was given: a NumPy array or a DataFrame."""
FORMATS = ("inputs", "instances", "dataframe_split", "dataframe_records")
TARGETS = {"inputs": 5.0, "instances": 5.0, "dataframe_split": 10.0, "dataframe_records": 10.0}


def register(home: Path) -> tuple[str, np.ndarray]:
    """Log the model both ways and register them as ``plain_numpy`` and ``plain_pandas``."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    features, target = make_classification(500, FEATURES, random_state=0)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(FEATURES)])
    experiment = mlflow.create_experiment("plain", (home / "artifacts").as_uri())
    for kind, example in (("numpy", features), ("pandas", frame)):
        # fitted on the same kind of data it is given, as its user would
        model = LogisticRegression(max_iter=500).fit(example, target)
        example = example[:5]
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(model, name="model", input_example=example,
                                     registered_model_name=f"plain_{kind}")
    return uri, features


def bodies(kind: str, features: np.ndarray) -> dict[str, str]:
    """One row in every format, as an MLflow user holding that kind of data writes it."""
    names = [f"f{i}" for i in range(FEATURES)] if kind == "pandas" else None
    frame = pd.DataFrame(features[:1], columns=names)
    row = features[0].tolist()
    records = frame.to_dict(orient="records")
    as_columns = {str(name): values for name, values in frame.to_dict(orient="list").items()}
    return {
        "inputs": json.dumps({"inputs": as_columns if kind == "pandas" else [row]}),
        "instances": json.dumps({"instances": records if kind == "pandas" else [row]}),
        "dataframe_split": json.dumps({"dataframe_split": frame.to_dict(orient="split")}),
        "dataframe_records": json.dumps({"dataframe_records": records}),
        "predict": json.dumps({"inputs": records if kind == "pandas" else [row]}),
    }


def servers(uri: str, kind: str, work: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """greenbutton's and MLflow's server of ``plain_<kind>``: argv, env, ready path."""
    py = sys.executable
    model = f"models:/plain_{kind}/1"
    path = f"{Path(py).parent}:{os.environ.get('PATH', '')}"  # mlflow execs `uvicorn`
    return {
        "greenbutton": ([py, "-m", "greenbutton", "serve", model, "--port", "{port}"],
                        {"GREENBUTTON_HOME": str(work), "GREENBUTTON_MLFLOW__TRACKING_URI": uri},
                        "/health/ready"),
        "mlflow": ([py, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager",
                    "local", "-p", "{port}"], {"MLFLOW_TRACKING_URI": uri, "PATH": path},
                   "/ping"),
        "bare": ([py, "-m", "uvicorn", "bench.plain_bare:app", "--port", "{port}",
                  "--workers", str(len(os.sched_getaffinity(0))), "--http", "httptools",
                  "--loop", "uvloop", "--no-access-log", "--log-level", "warning"],
                 {"MLFLOW_TRACKING_URI": uri, "MODEL_URI": model,
                  "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, "/ping"),
    }


def measure(uri: str, features: np.ndarray, work: Path, rounds: int, duration_s: int
            ) -> list[dict[str, Any]]:
    """Every kind and format, both servers up, ``rounds`` alternating rounds."""
    rows = []
    for kind in KINDS:
        body = bodies(kind, features)
        with contextlib.ExitStack() as stack:
            up = {name: stack.enter_context(running(server))
                  for name, server in servers(uri, kind, work).items()}
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            loads = [(name, load) for load in FORMATS for name in up] + [
                ("greenbutton", "predict")]
            for name, load in loads:  # warm up
                wrk(url(up[name][1], load), body[load], 8, 1, work)
            for round_ in range(rounds):
                for name, load in loads if round_ % 2 == 0 else loads[::-1]:
                    result = wrk(url(up[name][1], load), body[load], 8, duration_s, work)
                    runs.setdefault((name, load), []).append(result)
                    print(kind, name, load, result, flush=True)
        for load in (*FORMATS, "predict"):
            rows.append(summarize(kind, load, runs))
    return rows


def url(port: int, load: str) -> str:
    return f"http://127.0.0.1:{port}{'/predict' if load == 'predict' else '/invocations'}"


def summarize(kind: str, load: str, runs: dict[tuple[str, str], list[dict[str, Any]]]
              ) -> dict[str, Any]:
    """One table row: greenbutton's runs against MLflow's (``predict``: against ``inputs``)."""
    body = "inputs" if load == "predict" else load  # /predict takes the inputs body
    ours, bare, mlflow_runs = (runs[("greenbutton", load)], runs[("bare", body)],
                               runs[("mlflow", body)])
    theirs = runs[("greenbutton", "inputs")] if load == "predict" else mlflow_runs

    def ratios_of(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[float]:
        return [x["rps"] / y["rps"] for x, y in zip(a, b, strict=True) if y["rps"]]

    ratios, floor, to_bare = ratios_of(ours, theirs), ratios_of(bare, mlflow_runs), ratios_of(
        ours, bare)
    return {
        "kind": kind, "load": load,
        "ours": median([r["rps"] for r in ours]), "theirs": median([r["rps"] for r in theirs]),
        "ratio": median(ratios), "low": min(ratios), "high": max(ratios),
        "errors": sum(r["errors"] for r in ours), "their_errors": sum(r["errors"] for r in theirs),
        "tail": median([r["p99"] / r["p50"] for r in ours if r["p50"]]),
        "p50": median([r["p50"] for r in ours]), "p99": median([r["p99"] for r in ours]),
        "bare": median([r["rps"] for r in bare]), "floor": median(floor),
        "to_bare": median(to_bare), "bare_tail": median([r["p99"] / r["p50"] for r in bare
                                                        if r["p50"]]),
    }


def render(rows: list[dict[str, Any]], rounds: int, duration_s: int) -> str:
    lines = [f"Plain MLflow sklearn LogisticRegression ({FEATURES} features), one row per "
             f"request, c8, {rounds} alternating rounds of {duration_s} s per server and load; "
             "ratio: median of the rounds (lowest–highest). `predict` compares greenbutton's "
             "`/predict` with its own `/invocations` + `inputs` (target ≥ 1×).", "",
             "Floor: `bench/plain_bare.py`, the estimator behind a bare Starlette app "
             "(uvicorn, httptools, uvloop, one worker per core as greenbutton), in the same "
             "rounds: bare / mlflow is the most any Python server of the model reaches here.",
             "",
             "| input example | format | greenbutton req/s | mlflow req/s | ratio | target "
             "| bare req/s | bare / mlflow | greenbutton / bare "
             "| errors (gb / mlflow) | greenbutton p50 / p99 ms | p99 / p50 (≤ 3×) "
             "| bare p99 / p50 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = TARGETS.get(r["load"], 1.0)
        mark = "met" if r["ratio"] >= target else "**not met**"
        lines.append(
            f"| {r['kind']} | {r['load']} | {r['ours']:.0f} | {r['theirs']:.0f} | "
            f"**{r['ratio']:.2f}×** ({r['low']:.2f}–{r['high']:.2f}) | ≥ {target:.0f}× {mark} | "
            f"{r['bare']:.0f} | {r['floor']:.2f}× | {r['to_bare']:.2f}× | "
            f"{r['errors']} / {r['their_errors']} | {r['p50']:.2f} / {r['p99']:.2f} | "
            f"{r['tail']:.1f}× | {r['bare_tail']:.1f}× |")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    lines += ["", f"Load average (1/5/15 min) at the end of the run: {load}."]
    return "\n".join(lines)


def write_section(path: Path, table: str) -> None:
    begin, end = "<!-- plain-mlflow-bench:begin -->", "<!-- plain-mlflow-bench:end -->"
    text = path.read_text() if path.exists() else "# Performance\n"
    block = (f"{begin}\n## Serving plain MLflow models: greenbutton serve vs mlflow models "
             f"serve, every input format\n\nMeasured with `make bench` (`.venv/bin/python "
             f"bench/plain_mlflow_bench.py --write docs/performance.md`):\n\n{table}\n{end}")
    if begin in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per load")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench-deps`")
    work = Path(tempfile.mkdtemp(prefix="gb-plain-bench-"))
    try:
        uri, features = register(work)
        table = render(measure(uri, features, work, args.rounds, args.duration),
                       args.rounds, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table)
    if args.write:
        write_section(args.write, table)


if __name__ == "__main__":
    main()
