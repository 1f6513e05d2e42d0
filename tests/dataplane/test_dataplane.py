"""DataPlane: predictions, readiness, timeouts and metrics, without a server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from greenbutton.config import Settings
from greenbutton.dataplane.core import DataPlane, request_id_from
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics
from greenbutton.errors import ModelNotReady, RequestTimeout, SchemaMismatch

SaveModel = Callable[[mlflow.pyfunc.PythonModel], ServedModel]


class SlowModel(mlflow.pyfunc.PythonModel):
    """Takes half a second per call."""

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Zeros, late."""
        time.sleep(0.5)
        return np.zeros(len(model_input), dtype=np.int64)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_predict_returns_model_predictions(
    dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    frame = digits_frame[:20]
    result = await dataplane.predict(frame)
    np.testing.assert_array_equal(result.predictions, dataplane.model.pyfunc.predict(frame))
    assert (result.model_name, result.model_version, result.rows) == ("digits", "1", 20)


async def test_predict_counts_rows_and_latency_by_model_version(
    dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    await dataplane.predict(digits_frame[:7])
    labels = {"model": "digits", "version": "1"}
    assert sample(dataplane.metrics, "greenbutton_prediction_rows_total", **labels) == 7
    count = sample(dataplane.metrics, "greenbutton_inference_latency_seconds_count", **labels)
    assert count == 1  # the warm-up call is not counted


async def test_predict_keeps_callers_request_id(
    dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    result = await dataplane.predict(digits_frame[:1], request_id="abc-123")
    assert result.request_id == "abc-123"


def test_request_id_from_replaces_unsafe_token() -> None:
    assert request_id_from("order-42") == "order-42"
    assert request_id_from("bad id\r\nx") != "bad id\r\nx"
    assert len(request_id_from(None)) == 32


async def test_predict_wrong_dtype_raises_schema_mismatch(
    dataplane: DataPlane, digits_frame: pd.DataFrame
) -> None:
    frame = digits_frame[:2].astype(object)
    frame["pixel_3"] = "x"
    with pytest.raises(SchemaMismatch):
        await dataplane.predict(frame)


async def test_predict_slow_model_raises_request_timeout(
    settings: Settings, save_local_model: SaveModel, digits_frame: pd.DataFrame
) -> None:
    settings.serving.request_timeout_s = 0.05
    plane = DataPlane(settings.serving, Metrics(), save_local_model(SlowModel()))
    with pytest.raises(RequestTimeout):
        await plane.predict(digits_frame[:1])


async def test_predict_before_load_raises_model_not_ready(
    settings: Settings, digits_frame: pd.DataFrame
) -> None:
    plane = DataPlane(settings.serving, Metrics())
    with pytest.raises(ModelNotReady):
        await plane.predict(digits_frame[:1])


async def test_warm_up_makes_ready(settings: Settings, served_digits: ServedModel) -> None:
    plane = DataPlane(settings.serving, Metrics(), served_digits)
    assert not plane.is_ready
    await plane.warm_up()
    assert plane.is_ready
    assert sample(plane.metrics, "greenbutton_model_ready", model="digits", version="1") == 1


async def test_load_attaches_and_warms_up(settings: Settings, served_digits: ServedModel) -> None:
    plane = DataPlane(settings.serving, Metrics())
    await plane.load(lambda: served_digits)
    assert plane.is_ready
    assert (plane.name, plane.version) == ("digits", "1")


async def test_load_failure_is_kept_and_not_ready(settings: Settings) -> None:
    def broken() -> ServedModel:
        raise OSError("disk on fire")

    plane = DataPlane(settings.serving, Metrics())
    await plane.load(broken)
    assert isinstance(plane.load_error, OSError)
    assert not plane.is_ready


async def test_local_model_answers_as_unversioned_model(save_local_model: SaveModel) -> None:
    served = save_local_model(SlowModel())
    assert (served.name, served.version) == ("model", None)
