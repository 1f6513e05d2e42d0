"""Promotion gates on really logged models: held-out metric, the data scientist's own
``@model_test`` checks, latency budget, conformance; in process and in the worker process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings
from greenbutton.errors import InvalidInput
from greenbutton.gates.runner import fetch_version
from greenbutton.gates.spec import parse_gates
from greenbutton.gates.worker import load_version, run_gates
from greenbutton.model import model_test
from greenbutton.wiring import build_gate_runner
from mlflow_template import seed_mlflow_db


class Digits(greenbutton.Model):
    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.clf.predict(model_input)

    @model_test
    def recognises_a_clean_zero(self, context: Any) -> None:
        zero = pd.DataFrame([ZERO], columns=COLUMNS)
        assert int(self.predict(context, zero)[0]) == 0, "a clean 0 is not recognised"


X, Y = load_digits(return_X_y=True, as_frame=True)
COLUMNS = [f"pixel_{i}" for i in range(64)]
X.columns = COLUMNS
ZERO = X[Y == 0].mean().round().tolist()
GATES = [{"kind": "metric", "metric": "accuracy", "min": 0.9},
         {"kind": "latency", "p95_ms": 5000, "calls": 10}]  # loaded CI machines


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """v1: trained on 30 rows (low accuracy); v2: trained on 1 500 rows."""
    settings = Settings(home=tmp_path_factory.mktemp("gates") / "gb",
                        _env_file=None)  # type: ignore[call-arg]
    seed_mlflow_db(settings)
    previous = mlflow.get_tracking_uri()
    held_out = (X.iloc[1500:], Y.iloc[1500:])
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the worker process cannot import tests
    try:
        for rows in (30, 1500):
            clf = LogisticRegression(max_iter=300).fit(X.iloc[:rows], Y.iloc[:rows])
            greenbutton.log_model(Digits(clf), "digits", reference_data=X.iloc[:200],
                                  settings=settings, held_out=held_out, gates=GATES,
                                  pip_requirements=["scikit-learn", "pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    yield settings
    mlflow.set_tracking_uri(previous)


def by_name(outcomes: list[Any]) -> dict[str, Any]:
    return {o.gate: o for o in outcomes}


def gates_in_process(settings: Settings, version: int, folder: Path) -> list[Any]:
    """The version's gates run here (the tests trust their own models)."""
    local, tag = fetch_version(settings.mlflow, "digits", version, folder)
    return run_gates(local, tag)


def test_low_accuracy_version_fails_metric_gate_with_reason(logged: Settings,
                                                            tmp_path: Path) -> None:
    outcomes = by_name(gates_in_process(logged, 1, tmp_path))
    metric = outcomes["metric:accuracy"]
    assert not metric.is_passed
    assert metric.detail["value"] < 0.9 and "accuracy" in metric.detail["reason"]
    assert outcomes["conformance"].is_passed


def test_good_version_passes_every_gate(logged: Settings, tmp_path: Path) -> None:
    outcomes = gates_in_process(logged, 2, tmp_path)
    assert {o.gate for o in outcomes} == {"conformance", "model_test:recognises_a_clean_zero",
                                         "metric:accuracy", "latency"}
    assert all(o.is_passed for o in outcomes), outcomes


def test_unknown_version_fails_to_load(logged: Settings) -> None:
    (outcome,) = build_gate_runner(logged).run("digits", 99)
    assert (outcome.gate, outcome.is_passed) == ("load", False)


def test_unloadable_model_fails_to_load(tmp_path: Path) -> None:
    (outcome,) = run_gates(tmp_path, "[]")
    assert (outcome.gate, outcome.is_passed) == ("load", False)


@pytest.mark.slow
def test_sandboxed_worker_gives_the_same_verdicts_and_its_isolation(logged: Settings) -> None:
    outcomes = by_name(build_gate_runner(logged).run("digits", 1))
    assert not outcomes["metric:accuracy"].is_passed
    assert outcomes["conformance"].is_passed
    sandbox = outcomes["sandbox"]
    assert sandbox.is_passed and sandbox.detail["network"] == "isolated"


def test_metric_gate_without_held_out_is_refused(logged: Settings) -> None:
    clf = LogisticRegression(max_iter=50).fit(X.iloc[:100], Y.iloc[:100])
    with pytest.raises(InvalidInput):
        greenbutton.log_model(Digits(clf), "digits", reference_data=X.iloc[:50],
                              settings=logged, gates=GATES[:1])


@pytest.mark.parametrize("spec", [
    {"kind": "metric", "metric": "accuracy"},
    {"kind": "metric", "metric": "accuracy", "min": 0.9, "max": 1.0},
    {"kind": "metric", "metric": "auc", "min": 0.9},
    {"kind": "latency", "p95_ms": -1},
    {"kind": "sql", "query": "DROP TABLE x"},
])
def test_invalid_gate_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        parse_gates([spec])


def test_latency_gate_fails_over_budget(logged: Settings, tmp_path: Path) -> None:
    from greenbutton.gates.latency import LatencyBudgetGate
    from greenbutton.gates.spec import LatencyGateSpec

    loaded = load_version(fetch_version(logged.mlflow, "digits", 2, tmp_path)[0])
    outcome = LatencyBudgetGate(LatencyGateSpec(p95_ms=1e-6, calls=5)).evaluate(loaded)
    assert not outcome.is_passed and "budget" in outcome.detail["reason"]
    assert np.isfinite(outcome.detail["p95_ms"])


class Plain(greenbutton.Model):
    """No ``@model_test``: with no declared gate, nothing needs its code at promotion."""

    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.clf.predict(model_input)


def test_checked_at_log_time_only_when_no_gate_needs_model_code() -> None:
    from greenbutton.gates.runner import checked_at_log_time

    plain = {"greenbutton.conformance": '{"rows":200,"model_tests":[]}'}
    outcome = checked_at_log_time(plain)
    assert outcome is not None and outcome.is_passed and outcome.gate == "conformance"
    assert checked_at_log_time({**plain, "greenbutton.gates": '[{"kind":"latency",'
                                                              '"p95_ms":50}]'}) is None
    assert checked_at_log_time({"greenbutton.conformance":
                                '{"rows":200,"model_tests":["t"]}'}) is None
    assert checked_at_log_time({}) is None  # logged before log_model recorded it
    assert checked_at_log_time({**plain, "greenbutton.gates": "not json"}) is None


def test_version_without_gates_is_promoted_without_a_sandbox_run(logged: Settings) -> None:
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        clf = LogisticRegression(max_iter=100).fit(X.iloc[:300], Y.iloc[:300])
        done = greenbutton.log_model(Plain(clf), "plain", reference_data=X.iloc[:100],
                                     settings=logged,
                                     pip_requirements=["scikit-learn", "pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    (outcome,) = build_gate_runner(logged).run("plain", done.version)
    assert (outcome.gate, outcome.is_passed, outcome.detail["rows"]) == ("conformance", True, 100)
