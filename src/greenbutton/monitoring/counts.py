"""Exact tests on counts: does a window have more rows with some property than the reference?

Rows of the reference and of the window are exchangeable when nothing changed, so given the
total count, the window's count is hypergeometric: the one-sided Fisher exact test, exact at
any size (no normal approximation, no rate treated as known). A family of such tests is
corrected with Tarone's refinement of Bonferroni: a test whose counts could not reach
significance however they fell between window and reference (a column with no missing
value anywhere) does not count in the family, so checks that found nothing cost no power.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def excess_p(window: np.ndarray, window_rows: np.ndarray, reference: np.ndarray,
             reference_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Fisher p-values for "more in the window", and the smallest p-value each
    test could give with the same totals (for :func:`tarone_count`); element-wise."""
    window, window_rows = np.asarray(window), np.asarray(window_rows)
    reference, reference_rows = np.asarray(reference), np.asarray(reference_rows)
    population = window_rows + reference_rows
    total = window + reference
    p_value = stats.hypergeom.sf(window - 1, population, total, window_rows)
    best = np.minimum(total, window_rows)
    smallest = stats.hypergeom.sf(best - 1, population, total, window_rows)
    none = (total == 0) | (window_rows == 0)
    return np.where(none, 1.0, p_value), np.where(none, 1.0, smallest)


def tarone_count(smallest: np.ndarray, alpha: float) -> int:
    """How many tests the family counts: the least ``k`` such that at most ``k`` tests could
    reach ``alpha / k`` (Tarone, 1990); at least 1."""
    ordered = np.sort(np.asarray(smallest, dtype=float).ravel())
    for k in range(1, ordered.size + 1):
        if np.count_nonzero(ordered <= alpha / k) <= k:
            return k
    return max(1, ordered.size)
