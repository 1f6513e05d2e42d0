"""Shares with confidence intervals for the calibration benchmark."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    """Hits per key, grouped by split (for the design effect)."""

    hits: dict[str, list[list[bool]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: str, flags: list[bool]) -> None:
        self.hits[key].append(flags)

    def rate(self, key: str) -> tuple[float, float, float, int]:
        """Share of hits, its 95 % interval and the number of windows."""
        groups = self.hits.get(key, [])
        flat = [f for g in groups for f in g]
        if not flat:
            return math.nan, math.nan, math.nan, 0
        n_eff = len(flat) / design_effect(groups)
        share = float(np.mean(flat))
        low, high = wilson(share, n_eff)
        return share, low, high, len(flat)


def design_effect(groups: list[list[bool]]) -> float:
    """1 + (mean group size − 1) × intra-group correlation (ANOVA estimate, at least 0)."""
    sizes = np.array([len(g) for g in groups], dtype=float)
    if len(groups) < 2 or sizes.max() <= 1:
        return 1.0
    values = [np.asarray(g, dtype=float) for g in groups]
    grand = np.concatenate(values).mean()
    k = sizes.mean()
    between = sum(len(v) * (v.mean() - grand) ** 2 for v in values) / (len(values) - 1)
    within = sum(((v - v.mean()) ** 2).sum() for v in values) / (sizes.sum() - len(values))
    if between + (k - 1) * within == 0:
        return 1.0
    icc = max(0.0, (between - within) / (between + (k - 1) * within))
    return 1.0 + (k - 1) * icc


def wilson(share: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion observed over ``n`` (possibly effective) trials."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(rate: tuple[float, float, float, int]) -> str:
    share, low, high, n = rate
    if n == 0:
        return "n/a"
    return f"{100 * share:.1f} % ({100 * low:.1f}–{100 * high:.1f})"
