"""Drift detectors: is a window of recent traffic distributed like the reference data?

Each ``*Detector`` is fitted from reference data, tests one window and returns a
:class:`DriftResult` with a p-value; its fitted state is plain JSON parameters plus numpy
arrays (saved with ``np.savez``, loaded with ``allow_pickle=False``), so loading a model
version's monitors never unpickles anything. Detectors are chosen from :data:`DETECTORS`.

    detector = FeatureDriftDetector.fit(reference)
    result = detector.test(Window(frame=recent_rows, predictions=recent_predictions))
    result.p_value, result.is_drift
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from scipy import stats

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Window:
    """Recent traffic: inputs, the model's predictions, and per-row outlier scores."""

    frame: pd.DataFrame
    predictions: np.ndarray
    outlier_scores: np.ndarray = field(default_factory=lambda: np.empty(0))


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
    """A fitted drift test; ``kind`` is its key in :data:`DETECTORS`."""

    kind: ClassVar[str]

    def test(self, window: Window, alpha: float) -> DriftResult: ...

    def state(self) -> tuple[dict[str, Any], Arrays]: ...


def is_categorical(series: pd.Series) -> bool:
    """Strings, categories and booleans are tested with chi-squared; numbers with KS."""
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def chi2_two_sample(reference_counts: dict[str, int], values: pd.Series) -> tuple[float, float]:
    """Chi-squared test of homogeneity between reference category counts and ``values``."""
    window = values.astype("string").fillna("<missing>").value_counts()
    categories = sorted(set(reference_counts) | set(window.index))
    table = np.array([[reference_counts.get(c, 0) for c in categories],
                      [int(window.get(c, 0)) for c in categories]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table[1].sum() == 0:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def category_counts(values: pd.Series) -> dict[str, int]:
    """Category → count, missing values as ``<missing>``."""
    counts = values.astype("string").fillna("<missing>").value_counts()
    return {str(k): int(v) for k, v in counts.items()}


class FeatureDriftDetector:
    """Per-feature two-sample tests (KS / chi-squared), Bonferroni-corrected into one p-value."""

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
    def fit(cls, reference: pd.DataFrame, predictions: np.ndarray) -> FeatureDriftDetector:
        numeric = {c: reference[c].to_numpy(dtype=float) for c in reference.columns
                   if not is_categorical(reference[c])}
        categorical = {c: category_counts(reference[c]) for c in reference.columns
                       if is_categorical(reference[c])}
        return cls({k: v[~np.isnan(v)] for k, v in numeric.items()}, categorical)

    def test(self, window: Window, alpha: float) -> DriftResult:
        features = self._numeric_at_once(window) or self._numeric_one_by_one(window)
        for name, counts in self.categorical.items():
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
        values = window.frame[list(self.numeric)].to_numpy(dtype=float)
        if np.isnan(values).any():
            return None
        ks = stats.ks_2samp(self._stacked, values, axis=0)
        return dict(zip(self.numeric, zip(np.atleast_1d(ks.statistic).tolist(),
                                          np.atleast_1d(ks.pvalue).tolist(), strict=True),
                        strict=True))

    def _numeric_one_by_one(self, window: Window) -> dict[str, tuple[float, float]]:
        features: dict[str, tuple[float, float]] = {}
        for name, reference in self.numeric.items():
            values = window.frame[name].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if values.size == 0 or reference.size == 0:
                features[name] = (0.0, 1.0)
                continue
            ks = stats.ks_2samp(reference, values)
            features[name] = (float(ks.statistic), float(ks.pvalue))
        return features

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"categorical": self.categorical}, dict(self.numeric)

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> FeatureDriftDetector:
        return cls(dict(arrays), {k: dict(v) for k, v in params["categorical"].items()})


class MMDDetector:
    """Maximum mean discrepancy, RBF kernel (median-heuristic width), permutation p-value."""

    kind: ClassVar[str] = "mmd"
    max_reference_rows: ClassVar[int] = 300
    permutations: ClassVar[int] = 500

    def __init__(self, reference: np.ndarray, center: np.ndarray, scale: np.ndarray,
                 gamma: float, columns: list[str]) -> None:
        self.reference = reference
        self.center, self.scale, self.gamma, self.columns = center, scale, gamma, columns

    @classmethod
    def fit(cls, reference: pd.DataFrame, predictions: np.ndarray) -> MMDDetector:
        columns = [c for c in reference.columns if not is_categorical(reference[c])]
        values = np.nan_to_num(reference[columns].to_numpy(dtype=float))
        center, scale = values.mean(axis=0), values.std(axis=0)
        scale[scale == 0] = 1.0
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(values))[: cls.max_reference_rows]
        sample = (values[keep] - center) / scale
        distances = _squared_distances(sample, sample)
        median = float(np.median(distances[np.triu_indices(len(sample), 1)])) or 1.0
        return cls(sample, center, scale, 1.0 / median, columns)

    def test(self, window: Window, alpha: float) -> DriftResult:
        values = np.nan_to_num(window.frame[self.columns].to_numpy(dtype=float))
        pooled = np.vstack([self.reference, (values - self.center) / self.scale])
        kernel = np.exp(-self.gamma * _squared_distances(pooled, pooled))
        n, m = len(self.reference), len(values)
        rng = np.random.default_rng(len(pooled))
        labels = np.zeros((n + m, self.permutations + 1))
        labels[:n, 0] = 1.0
        for j in range(1, self.permutations + 1):
            labels[rng.permutation(n + m)[:n], j] = 1.0
        statistics = _mmd2(kernel, labels, n, m)
        observed = float(statistics[0])
        p_value = float((1 + np.sum(statistics[1:] >= observed)) / (self.permutations + 1))
        return DriftResult(self.kind, observed, p_value, p_value < alpha)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        params = {"gamma": self.gamma, "columns": self.columns}
        return params, {"reference": self.reference, "center": self.center, "scale": self.scale}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> MMDDetector:
        return cls(arrays["reference"], arrays["center"], arrays["scale"],
                   float(params["gamma"]), list(params["columns"]))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    result: np.ndarray = np.maximum(squared, 0.0)
    return result


def _mmd2(kernel: np.ndarray, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """Biased MMD² for each column of 0/1 ``labels`` (1 = reference side)."""
    k_labels = kernel @ labels
    k_rows = kernel.sum(axis=1)[:, None]
    xx = (labels * k_labels).sum(axis=0)
    yy = ((1 - labels) * (k_rows - k_labels)).sum(axis=0)
    xy = (labels * (k_rows - k_labels)).sum(axis=0)
    result: np.ndarray = xx / n**2 + yy / m**2 - 2 * xy / (n * m)
    return result


class PredictionDriftDetector:
    """Distribution of the model's outputs: chi-squared for labels, KS for numbers.

    Also used for label drift: feedback truths are compared with the reference predictions
    (log_model receives no reference labels; the model's outputs on its training data stand in).
    """

    kind: ClassVar[str] = "predictions"

    def __init__(self, counts: dict[str, int] | None, values: np.ndarray | None) -> None:
        self.counts, self.values = counts, values

    @classmethod
    def fit(cls, reference: pd.DataFrame, predictions: np.ndarray) -> PredictionDriftDetector:
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


class OutlierScoreDriftDetector:
    """Are the window's outlier scores higher than those of held-back reference rows?

    Two one-sided tests, Bonferroni-combined: Mann-Whitney U on all scores (a shift of many
    rows) and Fisher's exact test on the count above the outlier threshold (a few extreme rows).
    """

    kind: ClassVar[str] = "outlier_scores"

    def __init__(self, calibration: np.ndarray, threshold: float) -> None:
        self.calibration, self.threshold = calibration, threshold

    def test(self, window: Window, alpha: float) -> DriftResult:
        scores = window.outlier_scores
        if scores.size == 0 or self.calibration.size == 0:
            return DriftResult(self.kind, 0.0, 1.0, False)
        shift = stats.mannwhitneyu(scores, self.calibration, alternative="greater")
        above, reference_above = int(np.sum(scores > self.threshold)), int(
            np.sum(self.calibration > self.threshold))
        table = [[above, scores.size - above],
                 [reference_above, self.calibration.size - reference_above]]
        tail = stats.fisher_exact(table, alternative="greater")
        p_value = min(1.0, 2 * min(float(shift.pvalue), float(tail.pvalue)))
        rate = above / scores.size
        return DriftResult(self.kind, rate, p_value, p_value < alpha)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"threshold": self.threshold}, {"calibration": self.calibration}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> OutlierScoreDriftDetector:
        return cls(arrays["calibration"], float(params["threshold"]))


DETECTORS: dict[str, Any] = {
    FeatureDriftDetector.kind: FeatureDriftDetector,
    MMDDetector.kind: MMDDetector,
    PredictionDriftDetector.kind: PredictionDriftDetector,
    OutlierScoreDriftDetector.kind: OutlierScoreDriftDetector,
}
"""Detector kind → class (each has ``fit`` or is built by the suite, and ``from_state``)."""


def combine(results: list[DriftResult], alpha: float) -> DriftResult:
    """One verdict over several detectors: Bonferroni over their p-values."""
    if not results:
        return DriftResult("overall", 0.0, 1.0, False)
    best = min(results, key=lambda r: r.p_value)
    p_value = min(1.0, best.p_value * len(results))
    return DriftResult("overall", best.statistic, p_value, p_value < alpha)
