"""The gate worker: ``python -m greenbutton.gates.worker ANSWER_FD``, run in the sandbox
(:mod:`greenbutton.sandbox`) on a copy of one model version, so the control plane itself never
unpickles a model and the model sees nothing of the platform.

Reads ``{"model_dir": path, "gates": tag}`` on stdin and writes a JSON list of outcomes on
the answer pipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..store.governance_records import GateOutcome
from .base import Gate, LoadedVersion
from .checks import ModelTestsGate, model_tests
from .conformance import ConformanceGate
from .latency import LatencyBudgetGate
from .metric import MetricThresholdGate
from .spec import HELD_OUT_ARTIFACT, MetricGateSpec, parse_gates

REFERENCE_ARTIFACT = "greenbutton_reference"


def load_version(folder: Path) -> LoadedVersion:
    """Load the model version whose artifacts are in ``folder``."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model as MLmodel

    pyfunc = mlflow.pyfunc.load_model(str(folder))
    flavor = MLmodel.load(str(folder)).flavors.get("python_function", {})
    paths = {key: str(folder / value["path"])
             for key, value in (flavor.get("artifacts") or {}).items()}
    context = mlflow.pyfunc.PythonModelContext(artifacts=paths, model_config={})
    held_out = paths.get(HELD_OUT_ARTIFACT)
    return LoadedVersion(
        model_uri=str(folder), pyfunc=pyfunc, python_model=pyfunc.unwrap_python_model(),
        context=context, reference=pd.read_parquet(paths[REFERENCE_ARTIFACT]),
        held_out=None if held_out is None else pd.read_parquet(held_out))


def gates_for(version: LoadedVersion, tag: str) -> list[Gate]:
    """Conformance, then every ``@model_test``, then the declared specs, in that order."""
    gates: list[Gate] = [ConformanceGate()]
    gates += [ModelTestsGate(test) for test in model_tests(version.python_model)]
    for spec in parse_gates(tag):
        if isinstance(spec, MetricGateSpec):
            gates.append(MetricThresholdGate(spec))
        else:
            gates.append(LatencyBudgetGate(spec))
    return gates


def run_gates(folder: Path, tag: str) -> list[GateOutcome]:
    """Every gate's outcome; a gate that crashes fails with the error as its reason."""
    try:
        loaded = load_version(folder)
    except Exception as error:  # an unloadable model fails its gates, it is not a crash
        return [GateOutcome("load", False, {"reason": f"{type(error).__name__}: {error}"})]
    outcomes = []
    for gate in gates_for(loaded, tag):
        try:
            outcomes.append(gate.evaluate(loaded))
        except Exception as error:  # same: the gate fails, the others still run
            reason = f"{type(error).__name__}: {error}"[:2000]
            outcomes.append(GateOutcome(gate.name, False, {"reason": reason}))
    return outcomes


def main() -> int:
    """Entry point of the worker process."""
    job: dict[str, Any] = json.loads(sys.stdin.read())
    outcomes = run_gates(Path(job["model_dir"]), str(job["gates"]))
    with os.fdopen(int(sys.argv[-1]), "w") as answer:
        json.dump([dataclasses.asdict(o) for o in outcomes], answer, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
