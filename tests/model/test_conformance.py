"""greenbutton.check: what conforms and what exactly does not."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import greenbutton
from greenbutton.errors import InvalidInput, NonConformingModel


class Doubler(greenbutton.Model):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] * 2

    def explain(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input

    def reward(self, prediction: float, truth: float) -> float:
        return -((prediction - truth) ** 2)

    @greenbutton.endpoint("double-plus", methods=("POST",))
    def double_plus(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] * 2 + 1


class NoContext(greenbutton.Model):
    def predict(self, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]


def test_check_conforming_model_reports_ok() -> None:
    report = greenbutton.check(Doubler)
    assert report.is_ok, str(report)
    assert bool(report)


def test_check_predict_without_context_is_ok() -> None:
    assert greenbutton.check(NoContext()).is_ok


def test_check_missing_predict_is_reported() -> None:
    class Empty(greenbutton.Model):
        pass

    report = greenbutton.check(Empty)
    assert [p.where for p in report.problems] == ["predict"]


def test_check_not_a_greenbutton_model_is_reported() -> None:
    class Plain:
        def predict(self, model_input: Any) -> Any:
            return model_input

    report = greenbutton.check(Plain)  # type: ignore[arg-type]
    assert not report.is_ok


def test_check_predict_with_required_extra_argument_is_reported() -> None:
    class Greedy(greenbutton.Model):
        def predict(self, context: Any, model_input: Any, threshold: float) -> Any:
            return model_input

    assert [p.where for p in greenbutton.check(Greedy).problems] == ["predict"]


def test_check_ill_typed_reward_is_reported() -> None:
    class BadReward(Doubler):
        def reward(self, prediction: float) -> float:  # type: ignore[override]
            return prediction

    assert [p.where for p in greenbutton.check(BadReward).problems] == ["reward"]


def test_check_reserved_endpoint_path_is_reported() -> None:
    class Clash(Doubler):
        @greenbutton.endpoint("metrics")
        def mine(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input

    report = greenbutton.check(Clash)
    assert [p.where for p in report.problems] == ["endpoint mine"]


def test_check_bad_batch_size_is_reported() -> None:
    class Batchy(Doubler):
        max_batch_size = 0

    assert [p.where for p in greenbutton.check(Batchy).problems] == ["max_batch_size"]


def test_check_sample_with_wrong_row_count_is_reported() -> None:
    class Short(greenbutton.Model):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return [1]

    report = greenbutton.check(Short(), sample=pd.DataFrame({"x": [1, 2, 3]}))
    assert [p.where for p in report.problems] == ["predict"]


def test_check_sample_that_raises_is_reported() -> None:
    class Broken(greenbutton.Model):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            raise KeyError("y")

    report = greenbutton.check(Broken(), sample=pd.DataFrame({"x": [1]}))
    assert not report.is_ok


def test_endpoints_lists_decorated_methods() -> None:
    specs = Doubler.endpoints()
    assert [(s.path, s.methods, s.attribute) for s in specs] == [
        ("double-plus", ("POST",), "double_plus")
    ]


def test_log_model_nonconforming_model_is_refused(settings: Any) -> None:
    class Empty(greenbutton.Model):
        pass

    with pytest.raises(NonConformingModel):
        greenbutton.log_model(Empty(), "empty", reference_data=pd.DataFrame({"x": [1.0]}),
                              settings=settings)


@pytest.mark.parametrize("name", ["", "../etc", "a b", "x" * 101, "naïve", "a/b"])
def test_log_model_unsafe_name_is_refused(settings: Any, name: str) -> None:
    with pytest.raises(InvalidInput):
        greenbutton.log_model(Doubler(), name, reference_data=pd.DataFrame({"x": [1.0]}),
                              settings=settings)


def test_public_api_is_pinned() -> None:
    assert sorted(greenbutton.__all__) == [
        "ConformanceReport", "EndpointSpec", "LoggedModel", "Model", "Problem", "check",
        "endpoint", "log_model", "model_test",
    ]


def test_check_logged_copy_of_base_class_is_recognised(tmp_path: Any) -> None:
    # A logged model carries a by-value copy of greenbutton.Model (same module and name, other
    # class object); only a fresh process gets a real copy rather than cloudpickle's cached class.
    import subprocess
    import sys

    import cloudpickle

    import greenbutton.model as model_module

    class Local(greenbutton.Model):
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input

    cloudpickle.register_pickle_by_value(model_module)
    try:
        (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(Local))
    finally:
        cloudpickle.unregister_pickle_by_value(model_module)
    script = (
        "import sys, cloudpickle, greenbutton\n"
        f"cls = cloudpickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        "assert not issubclass(cls, greenbutton.Model), 'not a copy'\n"
        "print(greenbutton.check(cls).is_ok)\n"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
