"""On a payload store shared by several models, a serving process exports the live quality of
its own version only, and does not take feedback on another model's predictions."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from greenbutton.dataplane.hooks import utc_now
from greenbutton.monitoring.feedback import Feedback, FeedbackNotFound, FeedbackService
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.payload_log import PayloadLog
from greenbutton.monitoring.payload_store import PayloadStore


def _logged(request_id: str, model: str, version: str) -> dict[str, object]:
    return {"request_id": request_id, "model_name": model, "model_version": version,
            "endpoint": "/predict", "inputs": {"columns": ["a"], "data": [[1.0]]},
            "predictions": [1], "annotations": {}, "has_outlier": False, "latency_s": 0.01,
            "received_at": utc_now()}


def _service(store: PayloadStore, served: tuple[str, str]) -> tuple[FeedbackService,
                                                                    CollectorRegistry]:
    registry = CollectorRegistry()
    gauges = MonitoringGauges(registry)
    log = PayloadLog(store, gauges, capacity=10, flush_interval_s=60)
    return FeedbackService(store, log, gauges, flush_interval_s=0.01, served=served), registry


def _series(registry: CollectorRegistry, name: str) -> set[tuple[str, str]]:
    return {(s.labels["model"], s.labels["version"]) for metric in registry.collect()
            for s in metric.samples if s.name == name}


async def test_gauges_carry_only_the_served_version(payload_store: PayloadStore) -> None:
    payload_store.write_predictions([_logged("w2", "wine", "2"), _logged("w1", "wine", "1"),
                                     _logged("d1", "digits", "1")])
    digits, _ = _service(payload_store, ("digits", "1"))
    await digits.record(Feedback("d1", truth=1))
    older, _ = _service(payload_store, ("wine", "1"))
    await older.record(Feedback("w1", truth=0))
    wine, registry = _service(payload_store, ("wine", "2"))
    await wine.record(Feedback("w2", truth=1))
    assert _series(registry, "greenbutton_feedback_joined") == {("wine", "2")}
    assert _series(registry, "greenbutton_feedback_accuracy") == {("wine", "2")}


async def test_feedback_on_another_models_prediction_not_found(
    payload_store: PayloadStore,
) -> None:
    payload_store.write_predictions([_logged("d1", "digits", "1")])
    wine, registry = _service(payload_store, ("wine", "2"))
    with pytest.raises(FeedbackNotFound):
        await wine.record(Feedback("d1", truth=1))
    assert payload_store.summaries() == []
    assert _series(registry, "greenbutton_feedback_joined") == set()
