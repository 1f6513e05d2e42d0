"""Adversarial-input detection by feature squeezing (Xu et al., 2018), model-agnostic.

Each feature is quantised to a few levels of its reference range (the tabular analogue of
reducing an image's bit depth); an input whose prediction changes a lot when squeezed sits on a
fragile spot of the decision surface, as crafted inputs do. Off by default (it doubles the
model calls); enabled with ``monitoring.adversarial = true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .drift import Arrays
from .outliers import numeric_columns

Predict = Callable[[pd.DataFrame], Any]


class FeatureSqueezingDetector:
    """Flags rows whose prediction moves when the input is squeezed to ``levels`` levels."""

    kind: ClassVar[str] = "feature_squeezing"
    name = "adversarial"

    def __init__(self, columns: list[str], lower: np.ndarray, upper: np.ndarray, levels: int,
                 tolerance: float, predict: Predict | None = None) -> None:
        self.columns, self.lower, self.upper = columns, lower, upper
        self.levels, self.tolerance, self.predict = levels, tolerance, predict

    @classmethod
    def fit(cls, reference: pd.DataFrame, predictions: np.ndarray,
            levels: int = 8) -> FeatureSqueezingDetector:
        columns = numeric_columns(reference)
        values = np.nan_to_num(reference[columns].to_numpy(dtype=float))
        outputs = np.asarray(predictions)
        numeric = np.issubdtype(outputs.dtype, np.floating)
        tolerance = 0.1 * float(np.std(outputs)) if numeric and outputs.size else 0.0
        return cls(columns, values.min(axis=0), values.max(axis=0), levels, tolerance)

    def squeeze(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with each numeric feature rounded to ``levels`` levels."""
        span = np.where(self.upper > self.lower, self.upper - self.lower, 1.0)
        values = frame[self.columns].to_numpy(dtype=float)
        steps = np.round((values - self.lower) / span * (self.levels - 1))
        squeezed = frame.copy()
        squeezed[self.columns] = self.lower + steps / (self.levels - 1) * span
        return squeezed.astype(frame.dtypes.to_dict())

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        """Per row ``{"is_adversarial": bool, "score": float}`` (score: prediction change)."""
        if self.predict is None:
            raise RuntimeError("FeatureSqueezingDetector needs a predict function to annotate")
        original = np.asarray(predictions).reshape(len(frame), -1)
        squeezed = np.asarray(self.predict(self.squeeze(frame))).reshape(len(frame), -1)
        if np.issubdtype(original.dtype, np.number) and self.tolerance > 0:
            change = np.abs(original.astype(float) - squeezed.astype(float)).max(axis=1)
            flags = change > self.tolerance
        else:
            flags = (original != squeezed).any(axis=1)
            change = flags.astype(float)
        return [{"is_adversarial": bool(f), "score": float(s)} for f, s in zip(flags, change,
                                                                                 strict=True)]

    def bound_to(self, predict: Predict) -> FeatureSqueezingDetector:
        """The same detector, asking ``predict`` (the served model's) about squeezed rows."""
        return FeatureSqueezingDetector(self.columns, self.lower, self.upper, self.levels,
                                        self.tolerance, predict)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        params = {"columns": self.columns, "levels": self.levels, "tolerance": self.tolerance}
        return params, {"lower": self.lower, "upper": self.upper}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> FeatureSqueezingDetector:
        return cls(list(params["columns"]), arrays["lower"], arrays["upper"],
                   int(params["levels"]), float(params["tolerance"]))
