"""Drift detectors: is a window of recent traffic distributed like the reference data?

Each ``*Detector`` is fitted from reference data, tests one window and returns a
:class:`DriftResult` with a p-value; its fitted state is plain JSON parameters plus numpy
arrays (saved with ``np.savez``, loaded with ``allow_pickle=False``), so loading a model
version's monitors never unpickles anything. The detectors of a model version are listed in
``monitors.DETECTORS``; this module holds the per-feature and the output tests.

    detector = FeatureDriftDetector.fit(reference)
    result = detector.test(Window(frame=recent_rows, predictions=recent_predictions), 0.01)
    result.p_value, result.is_drift
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from .columns import (
    categorical_columns,
    category_counts,
    is_categorical,
    labels,
    numeric_values,
)

Arrays = dict[str, np.ndarray]
MIN_EXPECTED = 5.0
"""Categories expected fewer times than this in the window are pooled for chi-squared (its
approximation needs it; Cochran's rule)."""


def _empty() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True)
class Window:
    """Recent traffic: inputs, the model's predictions and per-row outlier scores; and the
    recent feedback: its truths and per-row outcomes (1/0 right or wrong, or the absolute
    error), and the model's class probabilities on the inputs, when it gives them."""

    frame: pd.DataFrame
    predictions: np.ndarray
    outlier_scores: np.ndarray = field(default_factory=_empty)
    truths: np.ndarray = field(default_factory=_empty)
    outcomes: np.ndarray = field(default_factory=_empty)
    probabilities: np.ndarray = field(default_factory=_empty)


@dataclass(frozen=True)
class DriftResult:
    """One test on one window; ``features`` holds per-feature results when there are any."""

    detector: str
    statistic: float
    p_value: float
    is_drift: bool
    features: dict[str, DriftResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for ``GET /monitoring``)."""
        body: dict[str, Any] = {"statistic": self.statistic, "p_value": self.p_value,
                                "is_drift": self.is_drift}
        if self.features:
            body["features"] = {k: v.to_json() for k, v in self.features.items()}
        return body

    @classmethod
    def from_json(cls, detector: str, body: dict[str, Any]) -> DriftResult:
        """The result :meth:`to_json` wrote (``detector``: its key in the results)."""
        return cls(detector, _number(body["statistic"]), _number(body["p_value"]),
                   bool(body["is_drift"]),
                   {k: cls.from_json(detector, v) for k, v in body.get("features", {}).items()})


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)  # JSON has no NaN: stored as null


class Detector(Protocol):
    """A fitted drift test; ``kind`` is its key in ``monitors.DETECTORS``."""

    kind: ClassVar[str]

    def test(self, window: Window, alpha: float) -> DriftResult: ...

    def state(self) -> tuple[dict[str, Any], Arrays]: ...


def chi2_two_sample(reference_counts: dict[str, int], values: pd.Series) -> tuple[float, float]:
    """Chi-squared test of homogeneity between reference category counts and the present
    ``values``; categories expected fewer than :data:`MIN_EXPECTED` times in the window
    (new ones included) are pooled into one."""
    window = labels(values).value_counts()
    categories = sorted(set(reference_counts) | {str(c) for c in window.index})
    table = np.array([[reference_counts.get(c, 0) for c in categories],
                      [int(window.get(c, 0)) for c in categories]], dtype=float)
    table = pool_sparse(table)
    if table.shape[1] < 2 or table[1].sum() == 0 or table[0].sum() == 0:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def pool_sparse(table: np.ndarray) -> np.ndarray:
    """A 2 × k table (reference, window) with the columns expected fewer than
    :data:`MIN_EXPECTED` times in the window merged into one; that one is merged into the
    smallest other column if it is expected less than once (Cochran's rule), else kept, so
    a new category common enough to matter still counts as its own."""
    totals = table.sum(axis=0)
    share = table[1].sum() / max(table.sum(), 1.0)
    sparse = totals * share < MIN_EXPECTED
    if not sparse.any():
        return table
    kept = table[:, ~sparse]
    pooled = table[:, sparse].sum(axis=1, keepdims=True)
    if kept.shape[1] >= 2 and pooled.sum() * share < 1.0:
        kept = kept.copy()
        kept[:, int(np.argmin(kept.sum(axis=0)))] += pooled[:, 0]
        return kept
    return np.hstack([kept, pooled])


class FeatureDriftDetector:
    """Per-feature two-sample tests, Bonferroni-corrected into one p-value: Kolmogorov-Smirnov
    and Mann-Whitney for numbers, chi-squared for categorical columns (see :mod:`.columns`);
    missing values are left out (the data-quality checks count them)."""

    kind: ClassVar[str] = "features"

    def __init__(self, numeric: Arrays, categorical: dict[str, dict[str, int]]) -> None:
        self.numeric = numeric
        self.categorical = categorical
        lengths = {len(v) for v in numeric.values()}
        # every reference column equally long (none had missing values): one 2-D array, so a
        # window without missing values is tested in one call for all columns
        self._stacked = (np.column_stack(list(numeric.values()))
                         if len(lengths) == 1 and lengths != {0} else None)

    @classmethod
    def fit(cls, reference: pd.DataFrame, categorical: list[str] | None = None
            ) -> FeatureDriftDetector:
        """``categorical``: the columns tested as categories (default: inferred)."""
        coded = set(categorical_columns(reference) if categorical is None else categorical)
        numeric = {c: numeric_values(reference[c]) for c in reference.columns if c not in coded}
        counts = {c: category_counts(reference[c]) for c in reference.columns if c in coded}
        return cls({k: v[np.isfinite(v)] for k, v in numeric.items()}, counts)

    def test(self, window: Window, alpha: float) -> DriftResult:
        features = self._numeric_at_once(window) or self._numeric_one_by_one(window)
        for name, counts in self.categorical.items():
            if name in window.frame.columns:
                features[name] = chi2_two_sample(counts, window.frame[name])
        count = max(1, len(features))
        per_feature = {
            name: DriftResult(self.kind, stat, p, p * count < alpha)
            for name, (stat, p) in features.items()
        }
        best = min(features.values(), key=lambda sp: sp[1], default=(0.0, 1.0))
        p_value = min(1.0, best[1] * count)
        return DriftResult(self.kind, best[0], p_value, p_value < alpha, per_feature)

    def _numeric_at_once(self, window: Window) -> dict[str, tuple[float, float]] | None:
        """KS for every numeric column in one scipy call (identical values; scipy's per-call
        overhead, 64 times over, was most of a test), or None when a value is missing."""
        if self._stacked is None or len(window.frame) == 0:
            return None
        try:
            values = window.frame[list(self.numeric)].to_numpy(dtype=float)
        except (KeyError, ValueError, TypeError):  # a column absent, or holding text
            return None
        if not np.isfinite(values).all():
            return None
        statistics, p_values = _distribution_and_location(self._stacked, values)
        return dict(zip(self.numeric, zip(statistics.tolist(), p_values.tolist(), strict=True),
                        strict=True))

    def _numeric_one_by_one(self, window: Window) -> dict[str, tuple[float, float]]:
        features: dict[str, tuple[float, float]] = {}
        for name, reference in self.numeric.items():
            if name not in window.frame.columns:
                continue
            values = numeric_values(window.frame[name])
            values = values[np.isfinite(values)]
            if values.size == 0 or reference.size == 0:
                features[name] = (0.0, 1.0)
                continue
            statistic, p_value = _distribution_and_location(reference, values)
            features[name] = (float(statistic[0]), float(p_value[0]))
        return features

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"categorical": self.categorical}, dict(self.numeric)

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> FeatureDriftDetector:
        return cls(dict(arrays), {k: dict(v) for k, v in params["categorical"].items()})


def _distribution_and_location(reference: np.ndarray, window: np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the KS statistic, and the smaller of the KS and Mann-Whitney p-values
    doubled (Bonferroni). KS answers "any change in the distribution", Mann-Whitney "a shift
    in location", for which it is the more powerful: a 0.5 sd shift of one of 25 features in
    100 rows (the mixed25 benchmark set) was found 70 % of the time with both, 53 % with KS
    alone."""
    ks = stats.ks_2samp(reference, window, axis=0)
    location = stats.mannwhitneyu(reference, window, axis=0)
    p_values = np.minimum(1.0, 2 * np.minimum(np.atleast_1d(ks.pvalue),
                                              np.atleast_1d(location.pvalue)))
    return np.atleast_1d(ks.statistic), p_values


class PredictionDriftDetector:
    """Distribution of the model's outputs: chi-squared for labels, KS for numbers.

    Fitted on the model's outputs on held-out rows when ``log_model`` got them (outputs on
    the training rows are in-sample: a model that fits them closely gives other shares on
    new rows), else on the reference rows. Also the label-drift test: fitted on the held-out
    truths, it compares the truths of recent feedback with them (see :mod:`.monitors`).
    """

    kind: ClassVar[str] = "predictions"

    def __init__(self, counts: dict[str, int] | None, values: np.ndarray | None) -> None:
        self.counts, self.values = counts, values

    @classmethod
    def fit(cls, predictions: np.ndarray) -> PredictionDriftDetector:
        """Fitted on reference outputs (or labels): one per row."""
        series = pd.Series(np.asarray(predictions).reshape(len(predictions), -1)[:, 0])
        if is_categorical(series) or _is_integral(series):
            return cls(category_counts(series), None)
        return cls(None, series.to_numpy(dtype=float))

    def test(self, window: Window, alpha: float) -> DriftResult:
        outputs = np.asarray(window.predictions)
        series = pd.Series(outputs.reshape(len(outputs), -1)[:, 0] if outputs.size else [])
        if self.counts is not None:
            statistic, p_value = chi2_two_sample(self.counts, series)
        elif self.values is not None and series.size:
            ks = stats.ks_2samp(self.values, series.to_numpy(dtype=float))
            statistic, p_value = float(ks.statistic), float(ks.pvalue)
        else:
            statistic, p_value = 0.0, 1.0
        return DriftResult(self.kind, statistic, p_value, p_value < alpha)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        arrays = {"values": self.values} if self.values is not None else {}
        return {"counts": self.counts}, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> PredictionDriftDetector:
        return cls(params.get("counts"), arrays.get("values"))


def _is_integral(series: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(series):
        return False
    values = series.dropna().to_numpy(dtype=float)
    return bool(np.all(values == np.round(values))) and np.unique(values).size <= 50


def combine(results: list[DriftResult], alpha: float) -> DriftResult:
    """One verdict over several detectors: Bonferroni over their p-values."""
    if not results:
        return DriftResult("overall", 0.0, 1.0, False)
    best = min(results, key=lambda r: r.p_value)
    p_value = min(1.0, best.p_value * len(results))
    return DriftResult("overall", best.statistic, p_value, p_value < alpha)
