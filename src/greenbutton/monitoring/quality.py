"""Data quality per input column: missing values, type and range violations, unseen categories.

Each check counts rows of the window with a property and compares that count with the
reference's by the exact one-sided Fisher test (:mod:`.counts`), so a window is flagged for
"more missing values than the reference had", not for any missing value. What a reference
row counts as is what a window row would be if it came after the others (leave one out):

- **missing**: the value is missing (all columns);
- **type**: a present value is not of the column's type (text in a number column, a
  fraction in an integer column, ±inf); none in the reference by definition;
- **range**: a number outside the reference's [min, max] (non-categorical numbers); in the
  reference, the row that alone holds the minimum or the maximum;
- **unseen**: a category the reference never had (categorical columns); in the reference,
  a category seen once.

All checks of all columns are one family, corrected with Tarone's Bonferroni (checks that
found nothing anywhere do not count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .columns import (
    ValueType,
    categorical_columns,
    labels,
    numeric_values,
    type_violations,
    value_type,
)
from .counts import excess_p, tarone_count
from .drift import Arrays, DriftResult, Window

MAX_CATEGORIES = 1000
"""Columns with more distinct values than this get no unseen-category check (identifiers:
nearly every value is new, there is nothing to test)."""
CHECKS = ("missing", "type", "range", "unseen")


@dataclass(frozen=True)
class ColumnProfile:
    """What the checks need to know about one reference column."""

    type: ValueType
    rows: int
    missing: int
    low: float | None = None
    high: float | None = None
    edge_rows: int = 0
    categories: frozenset[str] | None = None
    singletons: int = 0

    @classmethod
    def of(cls, series: pd.Series, is_categorical: bool) -> ColumnProfile:
        kind, missing = value_type(series), int(series.isna().sum())
        if is_categorical:
            counts = labels(series).value_counts()
            if len(counts) > MAX_CATEGORIES:
                return cls(kind, len(series), missing)
            return cls(kind, len(series), missing, categories=frozenset(map(str, counts.index)),
                       singletons=int(np.sum(counts.to_numpy() == 1)))
        values = numeric_values(series)
        values = values[np.isfinite(values)]
        if values.size < 2:
            return cls(kind, len(series), missing)
        low, high = float(values.min()), float(values.max())
        edges = int(np.sum(values == low) == 1) + int(np.sum(values == high) == 1)
        return cls(kind, len(series), missing, low, high, edges)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type.value, "rows": self.rows,
                                "missing": self.missing}
        if self.low is not None:
            body.update(low=self.low, high=self.high, edge_rows=self.edge_rows)
        if self.categories is not None:
            body.update(categories=sorted(self.categories), singletons=self.singletons)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ColumnProfile:
        categories = body.get("categories")
        return cls(ValueType(body["type"]), int(body["rows"]), int(body["missing"]),
                   body.get("low"), body.get("high"), int(body.get("edge_rows", 0)),
                   None if categories is None else frozenset(categories),
                   int(body.get("singletons", 0)))


@dataclass(frozen=True)
class Count:
    """One check of one column: rows with the property / rows looked at, window and reference."""

    column: str
    check: str
    window: int
    window_rows: int
    reference: int
    reference_rows: int


class DataQualityDetector:
    """Missing, type, range and unseen-category checks on every input column."""

    kind: ClassVar[str] = "quality"

    def __init__(self, profiles: dict[str, ColumnProfile]) -> None:
        self.profiles = profiles

    @classmethod
    def fit(cls, reference: pd.DataFrame, categorical: list[str] | None = None
            ) -> DataQualityDetector:
        coded = set(categorical_columns(reference) if categorical is None else categorical)
        return cls({c: ColumnProfile.of(reference[c], c in coded) for c in reference.columns})

    def test(self, window: Window, alpha: float) -> DriftResult:
        counts = [c for name, profile in self.profiles.items()
                  for c in _counts(name, profile, window.frame)]
        if not counts:
            return DriftResult(self.kind, 0.0, 1.0, False)
        p_values, smallest = excess_p(*(np.array([getattr(c, f) for c in counts]) for f in (
            "window", "window_rows", "reference", "reference_rows")))
        family = tarone_count(smallest, alpha)
        checks: dict[str, dict[str, DriftResult]] = {}
        for count, p_value in zip(counts, p_values.tolist(), strict=True):
            rate = count.window / count.window_rows if count.window_rows else 0.0
            checks.setdefault(count.column, {})[count.check] = DriftResult(
                self.kind, rate, p_value, p_value * family < alpha)
        features = {column: _column_result(self.kind, found) for column, found in checks.items()}
        p_value = min(1.0, float(p_values.min()) * family)
        worst = max(features.values(), key=lambda r: r.statistic)
        return DriftResult(self.kind, worst.statistic, p_value, p_value < alpha, features)

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"columns": {k: v.to_json() for k, v in self.profiles.items()}}, {}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> DataQualityDetector:
        return cls({k: ColumnProfile.from_json(v) for k, v in params["columns"].items()})


def _counts(name: str, profile: ColumnProfile, frame: pd.DataFrame) -> list[Count]:
    rows = len(frame)
    if name not in frame.columns:  # requests without the column: all of it missing
        return [Count(name, "missing", rows, rows, profile.missing, profile.rows)]
    series = frame[name]
    present = series.notna().to_numpy()
    seen, reference_seen = int(present.sum()), profile.rows - profile.missing
    found = [Count(name, "missing", rows - seen, rows, profile.missing, profile.rows),
             Count(name, "type", int(type_violations(series, profile.type).sum()), seen, 0,
                   reference_seen)]
    if profile.low is not None and profile.high is not None:
        values = numeric_values(series)
        with np.errstate(invalid="ignore"):
            outside = np.isfinite(values) & ((values < profile.low) | (values > profile.high))
        found.append(Count(name, "range", int(outside.sum()), int(np.isfinite(values).sum()),
                           profile.edge_rows, reference_seen))
    if profile.categories is not None:
        unseen = int((~labels(series).isin(profile.categories)).sum())
        found.append(Count(name, "unseen", unseen, seen, profile.singletons, reference_seen))
    return found


def _column_result(kind: str, checks: dict[str, DriftResult]) -> DriftResult:
    """One column: its worst rate, smallest (uncorrected) p-value, flagged if any check is."""
    return DriftResult(kind, max(r.statistic for r in checks.values()),
                       min(r.p_value for r in checks.values()),
                       any(r.is_drift for r in checks.values()), checks)
