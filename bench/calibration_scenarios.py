"""Windows of the calibration benchmark: clean, drifted inputs, and drifted feedback.

Input scenarios return a window of features and its true targets; feedback scenarios turn
true targets into what callers report back (label noise, a relabelled class). Which column
is shifted is chosen from the reference alone (no peeking at the detectors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from calibration_data import Split, Task
from scipy import stats

MAX_CATEGORY_LEVELS = 10
"""Numeric columns with at most this many distinct values count as categorical codes."""


@dataclass(frozen=True)
class Context:
    """What scenarios know: the reference, the task and the columns they act on."""

    split: Split
    task: Task
    continuous: list[str]
    informative: str
    categorical: str | None
    size: int

    @classmethod
    def of(cls, split: Split, task: Task, declared: tuple[str, ...], size: int) -> Context:
        reference = split.reference
        continuous = [c for c in reference.columns  # shifted columns: floats, not counts
                      if pd.api.types.is_float_dtype(reference[c])
                      and reference[c].nunique() > MAX_CATEGORY_LEVELS]
        strength = {c: abs(stats.spearmanr(reference[c], split.reference_y,
                                           nan_policy="omit").statistic) for c in continuous}
        coded = [c for c in reference.columns
                 if not pd.api.types.is_numeric_dtype(reference[c])
                 or reference[c].nunique() <= MAX_CATEGORY_LEVELS]
        categorical = declared[0] if declared else (coded[0] if coded else None)
        return cls(split, task, continuous, max(strength, key=lambda c: strength[c]),
                   categorical, size)


Window = tuple[pd.DataFrame, np.ndarray]
Scenario = Callable[[Context, np.random.Generator], Window]


def sample(context: Context, rng: np.random.Generator, index: np.ndarray | None = None
           ) -> Window:
    """``size`` pool rows without replacement (from ``index`` if given)."""
    pool = np.arange(len(context.split.pool)) if index is None else index
    chosen = rng.choice(pool, context.size, replace=False)
    return (context.split.pool.iloc[chosen].reset_index(drop=True),
            context.split.pool_y[chosen])


def clean(context: Context, rng: np.random.Generator) -> Window:
    return sample(context, rng)


def prior_shift(context: Context, rng: np.random.Generator) -> Window:
    """Classification: the most frequent class 20 points more frequent (the others shrunk in
    proportion); regression: three quarters of the window from rows above the reference's
    median target (or as many as the pool has)."""
    y, size = context.split.pool_y, context.size
    if context.task == "regression":
        high = np.flatnonzero(y > np.median(context.split.reference_y))
        low = np.flatnonzero(y <= np.median(context.split.reference_y))
        upper = min(3 * size // 4, len(high))  # small pools: as close to 3/4 as they allow
        chosen = np.concatenate([rng.choice(high, upper, replace=False),
                                 rng.choice(low, size - upper, replace=False)])
    else:
        classes, counts = np.unique(context.split.reference_y, return_counts=True)
        shares = counts / counts.sum()
        top = int(np.argmax(shares))
        boosted = min(1.0, shares[top] + 0.2)
        shares = shares * (1 - boosted) / (1 - shares[top])
        shares[top] = boosted
        wanted = np.round(shares * size).astype(int)
        wanted[top] = size - (wanted.sum() - wanted[top])
        chosen = np.concatenate([
            rng.choice(np.flatnonzero(y == c), min(n, int(np.sum(y == c))), replace=False)
            for c, n in zip(classes, wanted, strict=True)])
    return (context.split.pool.iloc[chosen].reset_index(drop=True), y[chosen])


def transformed(change: Callable[[pd.DataFrame, Context, np.random.Generator], None]
                ) -> Scenario:
    def scenario(context: Context, rng: np.random.Generator) -> Window:
        frame, y = sample(context, rng)
        frame = frame.copy()
        change(frame, context, rng)
        return frame, y
    return scenario


def _shift(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    name = context.informative
    frame[name] = frame[name] + 0.5 * context.split.reference[name].std()


def _scale(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    for name in context.continuous:
        mean = context.split.reference[name].mean()
        frame[name] = mean + 1.1 * (frame[name] - mean)


def _freeze(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    frame[context.informative] = context.split.reference[context.informative].median()


def _missing(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    frame[context.informative] = np.nan


def _unseen(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    name = context.categorical
    assert name is not None
    rows = rng.choice(len(frame), len(frame) // 10, replace=False)
    column = frame[name]
    if pd.api.types.is_numeric_dtype(column):
        frame.loc[rows, name] = context.split.reference[name].max() + 1
    else:
        frame[name] = column.astype(object)
        frame.loc[rows, name] = "never-seen"


def _gross(frame: pd.DataFrame, context: Context, rng: np.random.Generator) -> None:
    """5 % of the rows get three continuous features beyond the reference's range by half
    that range (a unit or entry error: beyond anything seen, whatever the tails)."""
    reference = context.split.reference
    for row in rng.choice(len(frame), len(frame) // 20, replace=False):
        for name in rng.choice(context.continuous, 3, replace=False):
            low, high = reference[name].min(), reference[name].max()
            beyond = high + (high - low) / 2 if rng.random() < 0.5 else low - (high - low) / 2
            frame.loc[row, name] = beyond


INPUT_SCENARIOS: dict[str, Scenario] = {
    "prior shift": prior_shift,
    "0.5 sd shift, informative feature": transformed(_shift),
    "scale x1.1, continuous features": transformed(_scale),
    "frozen informative feature": transformed(_freeze),
    "informative feature all missing": transformed(_missing),
    "unseen category in 10 % of rows": transformed(_unseen),
    "5 % gross outliers": transformed(_gross),
}


def label_noise(truths: np.ndarray, accuracy: float, context: Context,
                rng: np.random.Generator) -> np.ndarray:
    """Classification: enough labels moved to another class at random that the expected
    accuracy drops by 20 points; regression: truths moved by 0.5 sd of the target."""
    if context.task == "regression":
        return truths + 0.5 * float(np.std(context.split.reference_y))
    classes = np.unique(context.split.reference_y)
    share = min(1.0, 0.2 / (accuracy - (1 - accuracy) / (len(classes) - 1)))
    noisy = truths.copy()
    for i in np.flatnonzero(rng.random(len(truths)) < share):
        noisy[i] = rng.choice(classes[classes != truths[i]])
    return noisy


def relabelled(truths: np.ndarray, context: Context) -> np.ndarray:
    """The smallest class reported as the largest one (a relabelled class)."""
    classes, counts = np.unique(context.split.reference_y, return_counts=True)
    return np.where(truths == classes[counts.argmin()], classes[counts.argmax()], truths)
