"""Are a window's outlier scores higher than the reference's? Many rows a little, or a few a lot.

The calibration scores are out-of-sample scores of the reference rows (see
``monitors.fit_outliers``), exchangeable with the scores of clean traffic. Two one-sided
tests, Bonferroni-combined:

- **shift**: Mann-Whitney U on all scores (many rows a little more unusual);
- **tail**: how many window rows score above the reference's top 1 % (the flagging
  threshold), 0.5 %, 0.2 %, 0.1 % and above every reference score, each count compared with
  the reference's by the exact Fisher test; the smallest of these p-values is referred to
  its own distribution when nothing changed, simulated once per window size from random
  interleavings of window and reference rows, so the scan costs no Bonferroni factor of its
  own. A binomial test against the nominal 1 % would ignore that the threshold itself is
  estimated from a few hundred rows (its true rate may be 2 %); counting above stricter
  thresholds is what finds 5 gross outliers among 100 rows, which a count at 1 % cannot
  (6 flagged rows where 1 is expected has p ≈ 0.004 even with the rate known).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from .counts import excess_p
from .drift import Arrays, DriftResult, Window

TAIL_SHARES = (0.005, 0.002, 0.001)
"""Reference shares above the stricter thresholds (besides the flagging one and the top)."""
NULL_DRAWS = 20_000
"""Simulated clean windows per window size: p-values down to 5e-5."""


class OutlierScoreDriftDetector:
    """Shift and tail tests of a window's outlier scores against calibration scores."""

    kind: ClassVar[str] = "outlier_scores"
    tests: ClassVar[int] = 2

    def __init__(self, calibration: np.ndarray, threshold: float) -> None:
        self.calibration, self.threshold = calibration, threshold
        finite = np.sort(calibration[np.isfinite(calibration)])[::-1]
        rows = finite.size
        above = int(np.sum(finite > threshold))
        # k: reference scores above each threshold; the threshold is the (k+1)-th largest
        ks = {above, 0, *(int(share * rows) for share in TAIL_SHARES)}
        self.ks = tuple(sorted(k for k in ks if k < rows))
        self.cuts = np.array([threshold if k == above else finite[k] for k in self.ks])
        self._nulls: OrderedDict[int, np.ndarray] = OrderedDict()

    def test(self, window: Window, alpha: float) -> DriftResult:
        scores = window.outlier_scores
        if scores.size == 0 or self.calibration.size == 0 or not self.ks:
            return DriftResult(self.kind, 0.0, 1.0, False)
        shift = float(stats.mannwhitneyu(scores, self.calibration, alternative="greater").pvalue)
        counts = (scores[:, None] > self.cuts[None, :]).sum(axis=0)
        smallest = float(self._tail_p(counts[None, :], scores.size)[0])
        null = self._null(scores.size)
        tail = float((1 + np.searchsorted(null, smallest, side="right")) / (null.size + 1))
        flagged = float(np.mean(scores > self.threshold))
        parts = {"shift": DriftResult(self.kind, float(np.median(scores)), shift,
                                      shift * self.tests < alpha),
                 "tail": DriftResult(self.kind, flagged, tail, tail * self.tests < alpha)}
        p_value = min(1.0, min(shift, tail) * self.tests)
        return DriftResult(self.kind, flagged, p_value, p_value < alpha, parts)

    def _tail_p(self, counts: np.ndarray, rows: int) -> np.ndarray:
        """The smallest Fisher p-value over the thresholds, per row of ``counts`` (looked up
        in a table of every possible count: the null has 100,000 of them)."""
        possible = np.arange(rows + 1)
        table = np.stack([excess_p(possible, np.full(rows + 1, rows), np.full(rows + 1, k),
                                   np.full(rows + 1, self.calibration.size))[0]
                          for k in self.ks], axis=1)
        smallest: np.ndarray = table[counts, np.arange(len(self.ks))].min(axis=1)
        return smallest

    def _null(self, rows: int) -> np.ndarray:
        """Sorted smallest tail p-values of simulated clean windows of ``rows`` rows: every
        row gets a uniform key and the window's and reference's ranks are those of the keys
        (the reference's top keys drawn as order statistics, from exponential spacings)."""
        if rows in self._nulls:
            self._nulls.move_to_end(rows)
            return self._nulls[rows]
        rng = np.random.default_rng(rows)
        reference, deepest = self.calibration.size, max(self.ks)
        spacings = np.cumsum(rng.exponential(size=(NULL_DRAWS, deepest + 1)), axis=1)
        rest = rng.gamma(reference - deepest, size=(NULL_DRAWS, 1))
        top = 1.0 - spacings / (spacings[:, -1:] + rest)  # [:, j]: the (j+1)-th largest key
        keys = rng.random((NULL_DRAWS, rows))
        counts = np.stack([(keys > top[:, [k]]).sum(axis=1) for k in self.ks], axis=1)
        null = np.sort(self._tail_p(counts, rows))
        self._nulls[rows] = null
        if len(self._nulls) > 4:  # windows fill up row by row at start: keep a few sizes
            self._nulls.popitem(last=False)
        return null

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"threshold": self.threshold}, {"calibration": self.calibration}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> OutlierScoreDriftDetector:
        return cls(arrays["calibration"], float(params["threshold"]))
