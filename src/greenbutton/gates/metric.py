"""``MetricThresholdGate``: a metric of the logged model on its held-out data meets a bound."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import GateOutcome, LoadedVersion
from .spec import TARGET_COLUMN, MetricGateSpec


def score(metric: str, truth: Any, predicted: Any) -> float:
    """``metric`` of ``predicted`` against ``truth``."""
    from sklearn import metrics

    truth, predicted = np.asarray(truth), np.asarray(predicted).reshape(len(truth), -1)
    predicted = predicted[:, 0] if predicted.shape[1] == 1 else predicted.argmax(axis=1)
    if metric == "accuracy":
        return float(metrics.accuracy_score(truth, predicted))
    if metric == "f1_macro":
        return float(metrics.f1_score(truth, predicted, average="macro"))
    if metric == "rmse":
        return float(np.sqrt(metrics.mean_squared_error(truth, predicted)))
    if metric == "mae":
        return float(metrics.mean_absolute_error(truth, predicted))
    return float(metrics.r2_score(truth, predicted))


class MetricThresholdGate:
    """E.g. ``accuracy ≥ 0.9`` or ``rmse ≤ 0.7`` on the held-out set logged with the model."""

    def __init__(self, spec: MetricGateSpec) -> None:
        self.spec = spec
        self.name = f"metric:{spec.metric}"

    def evaluate(self, version: LoadedVersion) -> GateOutcome:
        """Predict the held-out rows and compare the metric with the bound."""
        if version.held_out is None:
            return GateOutcome(self.name, False, {"reason": "no held-out data was logged"})
        features = version.held_out.drop(columns=[TARGET_COLUMN])
        value = score(self.spec.metric, version.held_out[TARGET_COLUMN],
                      version.pyfunc.predict(features))
        detail: dict[str, Any] = {"metric": self.spec.metric, "value": round(value, 6),
                                  "rows": len(features)}
        if self.spec.min is not None:
            is_passed, bound = value >= self.spec.min, f">= {self.spec.min}"
        else:
            assert self.spec.max is not None
            is_passed, bound = value <= self.spec.max, f"<= {self.spec.max}"
        detail["required"] = bound
        if not is_passed:
            detail["reason"] = (f"{self.spec.metric} {value:.4f} on {len(features)} held-out "
                                f"rows; required {bound}")
        return GateOutcome(self.name, is_passed, detail)
