"""Maximum mean discrepancy: a multivariate two-sample test on the numeric columns.

A permutation test is exact when the reference rows it uses and the window are exchangeable.
Against one fixed reference sample it is exact only on average over samples: any one sample
differs from the population by chance, and every window is then judged against that
difference (with one fixed sample, clean windows are flagged at 0.5 % to 12 % instead of
5 %, depending on the sample). So each test draws a fresh sample of
:attr:`MMDDetector.sample_rows` from the stored reference (up to
:attr:`MMDDetector.max_reference_rows`), seeded by the window's values so a window always
gets the same answer; what remains is the difference between the
whole reference and the population, which shrinks as the reference grows.
"""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .columns import is_categorical, numeric_values
from .drift import Arrays, DriftResult, Window


class MMDDetector:
    """RBF kernel (median-heuristic width on standardised columns), permutation p-value
    against a fresh reference sample per window; missing values count as the mean."""

    kind: ClassVar[str] = "mmd"
    sample_rows: ClassVar[int] = 200
    max_reference_rows: ClassVar[int] = 2000
    permutations: ClassVar[int] = 1000
    """Enough for p-values down to 0.001 (the detector's share of alpha is about that)."""

    def __init__(self, reference: np.ndarray, center: np.ndarray, scale: np.ndarray,
                 gamma: float, columns: list[str]) -> None:
        self.reference = reference
        self.center, self.scale, self.gamma, self.columns = center, scale, gamma, columns

    @classmethod
    def fit(cls, reference: pd.DataFrame) -> MMDDetector:
        columns = [c for c in reference.columns if not is_categorical(reference[c])]
        values = np.column_stack([numeric_values(reference[c]) for c in columns]) \
            if columns else np.zeros((len(reference), 0))
        finite = np.where(np.isfinite(values), values, np.nan)
        center = np.nan_to_num(np.nanmean(finite, axis=0)) if len(values) else np.zeros(0)
        scale = np.nan_to_num(np.nanstd(finite, axis=0)) if len(values) else np.zeros(0)
        scale[scale == 0] = 1.0
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(values))[: cls.max_reference_rows]
        stored = _standardise(values[keep], center, scale)
        sample = stored[: cls.sample_rows]
        distances = _squared_distances(sample, sample)
        median = float(np.median(distances[np.triu_indices(len(sample), 1)])) or 1.0
        return cls(stored, center, scale, 1.0 / median, columns)

    def test(self, window: Window, alpha: float) -> DriftResult:
        if not self.columns or len(window.frame) < 2:
            return DriftResult(self.kind, 0.0, 1.0, False)
        frame = window.frame.reindex(columns=self.columns)
        values = _standardise(np.column_stack([numeric_values(frame[c]) for c in self.columns]),
                              self.center, self.scale)
        rng = np.random.default_rng(zlib.crc32(values.tobytes()))
        rows = min(self.sample_rows, len(self.reference))
        sample = self.reference[rng.choice(len(self.reference), rows, replace=False)]
        pooled = np.vstack([sample, values])
        kernel = np.exp(-self.gamma * _squared_distances(pooled, pooled)).astype(np.float32)
        n, m = rows, len(values)
        # column 0: the observed split; the others: n rows drawn at random as the reference
        chosen = np.argpartition(rng.random((self.permutations, n + m)), n, axis=1)[:, :n]
        labels = np.zeros((n + m, self.permutations + 1), dtype=np.float32)
        labels[:n, 0] = 1.0
        labels[chosen, np.arange(1, self.permutations + 1)[:, None]] = 1.0
        statistics = _mmd2(kernel, labels, n, m)
        observed = float(statistics[0])
        # a small tolerance: float32 sums of the same rows in another order differ slightly
        exceed = np.sum(statistics[1:] >= observed * (1 - 1e-5))
        p_value = float((1 + exceed) / (self.permutations + 1))
        return DriftResult(self.kind, observed, p_value, p_value < alpha)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        params = {"gamma": self.gamma, "columns": self.columns}
        return params, {"reference": self.reference, "center": self.center, "scale": self.scale}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> MMDDetector:
        return cls(arrays["reference"], arrays["center"], arrays["scale"],
                   float(params["gamma"]), list(params["columns"]))


def _standardise(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised values; missing ones at 0 (the mean), infinite ones very large."""
    with np.errstate(invalid="ignore", over="ignore"):
        standard = (values - center) / scale
    result: np.ndarray = np.nan_to_num(standard, nan=0.0, posinf=1e6, neginf=-1e6)
    return result


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    result: np.ndarray = np.maximum(squared, 0.0)
    return result


def _mmd2(kernel: np.ndarray, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """Biased MMD² for each column of 0/1 ``labels`` (1 = reference side): with
    xx = lᵀKl and r = lᵀK1, the window–window sum is 1ᵀK1 − 2r + xx and the cross sum r − xx."""
    rows = kernel.sum(axis=1)
    xx = np.einsum("ij,ij->j", labels, kernel @ labels)
    r = labels.T @ rows
    yy = rows.sum() - 2 * r + xx
    xy = r - xx
    result: np.ndarray = xx / n**2 + yy / m**2 - 2 * xy / (n * m)
    return result
