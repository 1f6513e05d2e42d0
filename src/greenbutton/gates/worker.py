"""The gate worker: ``python -m greenbutton.gates.worker`` loads one model version and runs
its gates, so the control plane itself never unpickles a model.

Reads ``{"model": name, "version": n}`` on stdin, settings from ``GREENBUTTON_*``, and
writes a JSON list of outcomes on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..config import Settings
from ..store.governance_records import GateOutcome
from .base import Gate, LoadedVersion
from .checks import ModelTestsGate, model_tests
from .conformance import ConformanceGate
from .latency import LatencyBudgetGate
from .metric import MetricThresholdGate
from .spec import GATES_TAG, HELD_OUT_ARTIFACT, MetricGateSpec, parse_gates

REFERENCE_ARTIFACT = "greenbutton_reference"


def load_version(settings: Settings, name: str, version: int, folder: Path) -> tuple[
        LoadedVersion, str]:
    """Download and load ``name`` version ``version``; also returns its gates tag."""
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import Model as MLmodel

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.registry_uri or settings.mlflow.tracking_uri)
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    tag = client.get_model_version(name, str(version)).tags.get(GATES_TAG, "[]")
    source = client.get_model_version_download_uri(name, str(version))
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(folder),
                                                tracking_uri=settings.mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(local)
    flavor = MLmodel.load(local).flavors.get("python_function", {})
    paths = {key: str(Path(local) / value["path"])
             for key, value in (flavor.get("artifacts") or {}).items()}
    context = mlflow.pyfunc.PythonModelContext(artifacts=paths, model_config={})
    held_out = paths.get(HELD_OUT_ARTIFACT)
    loaded = LoadedVersion(
        model_uri=local, pyfunc=pyfunc, python_model=pyfunc.unwrap_python_model(),
        context=context, reference=pd.read_parquet(paths[REFERENCE_ARTIFACT]),
        held_out=None if held_out is None else pd.read_parquet(held_out))
    return loaded, tag


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


def run_gates(settings: Settings, name: str, version: int) -> list[GateOutcome]:
    """Every gate's outcome; a gate that crashes fails with the error as its reason."""
    with tempfile.TemporaryDirectory(prefix="greenbutton-gates-") as tmp:
        try:
            loaded, tag = load_version(settings, name, version, Path(tmp))
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
    outcomes = run_gates(Settings(), str(job["model"]), int(job["version"]))
    sys.stdout.write(json.dumps([dataclasses.asdict(o) for o in outcomes], default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
