"""Performance from feedback, per row: is the model now worse than on its held-out rows?

Feedback is scored row by row (a 40-row request with 38 right answers is 38 right, 2
wrong): 1 or 0 for a classifier's label, the absolute error for a regressor's number.
:class:`PerformanceDetector` compares the last rows of feedback with the same outcomes on
the held-out rows given to ``log_model``, which the model did not train on, so both are
draws from the same distribution when nothing changed: for accuracy the exact one-sided
Fisher test on the count of wrong rows, for errors a one-sided Mann-Whitney test.

:class:`ConfidenceEstimator` estimates accuracy *without* labels (confidence-based
performance estimation): the model's highest class probability, mapped through an
isotonic calibration fitted on the held-out rows to the chance that the prediction is
right, averaged over the window. It assumes the calibration still holds (shifts in the
inputs are fine, a change in what the right label is for an input is not: that is what
feedback is for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import stats

from .counts import excess_p
from .drift import Arrays, DriftResult, Window

Measure = Literal["accuracy", "error"]


def row_outcomes(predictions: Sequence[Any], truths: Sequence[Any]) -> tuple[Measure, list[float]]:
    """Per row: 1.0 / 0.0 when the prediction is a label (right or wrong), else the
    absolute error; the measure is ``error`` only when every pair is numbers and no
    prediction is an integer (integers are class labels)."""
    pairs = list(zip(predictions, truths, strict=True))
    if pairs and all(_is_number(p) and _is_number(t) and not isinstance(p, int)
                     for p, t in pairs):
        return "error", [abs(float(p) - float(t)) for p, t in pairs]
    return "accuracy", [1.0 if str(p) == str(t) else 0.0 for p, t in pairs]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class PerformanceDetector:
    """Recent feedback's per-row outcomes against the held-out rows' (one-sided: worse)."""

    kind: ClassVar[str] = "performance"

    def __init__(self, measure: Measure, reference: np.ndarray) -> None:
        self.measure, self.reference = measure, reference

    @classmethod
    def fit(cls, predictions: Any, truths: Any) -> PerformanceDetector:
        """From the model's outputs on the held-out rows and their truths."""
        measure, outcomes = row_outcomes(_plain(predictions), _plain(truths))
        return cls(measure, np.asarray(outcomes, dtype=float))

    @property
    def reference_value(self) -> float:
        """Held-out accuracy, or mean absolute error."""
        return float(self.reference.mean()) if self.reference.size else math.nan

    def test(self, window: Window, alpha: float) -> DriftResult:
        outcomes = np.asarray(window.outcomes, dtype=float)
        if outcomes.size == 0 or self.reference.size == 0:
            return DriftResult(self.kind, math.nan, 1.0, False)
        if self.measure == "accuracy":
            wrong = int(np.sum(outcomes < 0.5))
            [p_value], _ = excess_p(np.array([wrong]), np.array([outcomes.size]),
                                    np.array([int(np.sum(self.reference < 0.5))]),
                                    np.array([self.reference.size]))
        else:
            p_value = stats.mannwhitneyu(outcomes, self.reference, alternative="greater").pvalue
        p = float(p_value)
        return DriftResult(self.kind, float(outcomes.mean()), p, p < alpha)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"measure": self.measure}, {"reference": self.reference}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> PerformanceDetector:
        measure: Measure = "error" if params["measure"] == "error" else "accuracy"
        return cls(measure, arrays["reference"])


class ConfidenceEstimator:
    """Accuracy estimated from class probabilities, calibrated on the held-out rows."""

    kind: ClassVar[str] = "confidence"
    min_rows: ClassVar[int] = 50
    """Held-out rows needed to fit the calibration."""

    def __init__(self, confidence: np.ndarray, accuracy: np.ndarray, held_out_rows: int
                 ) -> None:
        self.confidence, self.accuracy = confidence, accuracy
        self.held_out_rows = held_out_rows

    @classmethod
    def fit(cls, probabilities: np.ndarray, is_correct: np.ndarray) -> ConfidenceEstimator:
        """From the held-out rows' class probabilities and whether each prediction was right."""
        top = np.max(np.asarray(probabilities, dtype=float), axis=1)
        from sklearn.isotonic import IsotonicRegression  # only when a model reports probabilities

        curve = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        curve.fit(top, np.asarray(is_correct, dtype=float))
        return cls(curve.X_thresholds_, curve.y_thresholds_, len(top))

    def estimate(self, probabilities: np.ndarray) -> dict[str, float] | None:
        """Estimated accuracy of rows with these probabilities and a 95 % interval; None
        without rows. The interval adds two spreads, each that of an accuracy counted over
        so many rows: of the window's right answers, and of the calibration itself (fitted
        on the held-out rows; under a shift to inputs the held-out rows had few of, it is
        wider than that). Both are Agresti-Coull variances (two right and two wrong rows
        added): an accurate model's held-out rows are often all right, and a plug-in
        ``m (1 - m)`` near 1 is near 0."""
        values = np.asarray(probabilities, dtype=float)
        if values.ndim != 2 or len(values) == 0:
            return None
        chances = np.interp(values.max(axis=1), self.confidence, self.accuracy)
        mean = float(chances.mean())
        spread = _accuracy_variance(mean, len(chances)) + _accuracy_variance(
            mean, max(1, self.held_out_rows))
        half = 1.96 * math.sqrt(spread)
        return {"accuracy": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half),
                "rows": float(len(chances))}

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"held_out_rows": self.held_out_rows}, {"confidence": self.confidence,
                                                       "accuracy": self.accuracy}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> ConfidenceEstimator:
        return cls(arrays["confidence"], arrays["accuracy"], int(params["held_out_rows"]))


def _accuracy_variance(accuracy: float, rows: int) -> float:
    """Agresti-Coull variance of an accuracy counted over ``rows`` rows."""
    adjusted = (accuracy * rows + 2) / (rows + 4)
    return adjusted * (1 - adjusted) / (rows + 4)


def _plain(values: Any) -> list[Any]:
    """Python scalars (numpy's ``int64`` is not an ``int``: labels must compare as ints)."""
    array = np.asarray(values)
    flat = array.reshape(len(array), -1)[:, 0] if array.ndim > 1 else array
    return list(flat.tolist())


def summary(detector: PerformanceDetector | None, confidence: ConfidenceEstimator | None,
            window: Window, result: DriftResult | None) -> dict[str, Any]:
    """What ``GET /monitoring`` shows: the measure, the labelled rows tested, their accuracy
    (or mean absolute error) beside the held-out one, the test's p-value, and the accuracy
    estimated without labels on the window's rows with its 95 % interval (None: unknown)."""
    outcomes = np.asarray(window.outcomes, dtype=float)
    known = detector is not None and outcomes.size > 0
    estimated = (confidence.estimate(window.probabilities)
                 if confidence is not None and np.asarray(window.probabilities).size else None)
    return {"measure": None if detector is None else detector.measure,
            "rows": int(outcomes.size),
            "recent": float(outcomes.mean()) if known else None,
            "held_out": None if detector is None else detector.reference_value,
            "p_value": None if result is None else result.p_value,
            "estimated": estimated}
