"""Data sets and drift scenarios of the monitoring calibration benchmark (none is digits).

Each :class:`DataSet` draws one independent *split*: reference rows (what ``log_model``
gets), held-out rows with labels (what it gets as ``held_out``) and a production pool that
windows are drawn from. Bundled tables are split at random, so reference and windows are
exchangeable under "no drift"; synthetic tables are generated afresh per split (an endless
population). Scenarios turn the pool into one window of ``size`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Split:
    """One draw of a data set: reference, held-out and production pool (features, target)."""

    reference: pd.DataFrame
    reference_y: np.ndarray
    held_out: pd.DataFrame
    held_out_y: np.ndarray
    pool: pd.DataFrame
    pool_y: np.ndarray


@dataclass(frozen=True)
class DataSet:
    """A table, its task, the columns declared categorical, how a split is drawn, and how
    clean windows are tested: on ``clean_splits`` times as many splits as the scenarios,
    ``clean_per_split`` on each.

    Windows from one finite pool overlap (they share most rows, so one unusual pool flags
    all of them): bundled tables get eight times the splits and two clean windows each;
    generated tables draw independent windows, twenty per split."""

    name: str
    description: str
    task: Task
    draw: Callable[[np.random.Generator], Split]
    categorical: tuple[str, ...] = field(default=())
    clean_splits: int = 1
    clean_per_split: int = 20


def split_table(X: pd.DataFrame, y: np.ndarray, rng: np.random.Generator,
                shares: tuple[float, float]) -> Split:
    """A random split of a finite table: ``shares`` of reference and held-out, the rest pool."""
    order = rng.permutation(len(X))
    a = int(shares[0] * len(X))
    b = a + int(shares[1] * len(X))

    def rows(index: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        return X.iloc[index].reset_index(drop=True), y[index]

    return Split(*rows(order[:a]), *rows(order[a:b]), *rows(order[b:]))


def breast_cancer(rng: np.random.Generator) -> Split:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return split_table(X, y.to_numpy(), rng, (0.55, 0.15))


def diabetes(rng: np.random.Generator) -> Split:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return split_table(X, y.to_numpy(), rng, (0.5, 0.15))


def _latent(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.normal(size=(n, k))


def mixed_rows(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """25 columns: correlated Gaussians, skewed (log-normal), counts, integer-coded
    categories, binaries and noise; a binary target from several of them."""
    z = _latent(rng, n, 3)
    loadings = np.random.default_rng(11).normal(size=(3, 13))  # fixed: one population
    columns: dict[str, np.ndarray] = {}
    base = z @ loadings + rng.normal(size=(n, 13))
    for j in range(8):
        columns[f"g{j}"] = base[:, j]
    for j in range(5):
        columns[f"skew{j}"] = np.exp(0.6 * base[:, 8 + j] / base[:, 8 + j].std())
    for j in range(4):
        columns[f"count{j}"] = rng.poisson(np.exp(0.8 + 0.4 * z[:, j % 3])).astype(np.int64)
    for j, levels in enumerate((3, 4, 5, 8)):
        logits = np.outer(z[:, j % 3], np.linspace(-1, 1, levels)) + rng.gumbel(
            size=(n, levels))
        columns[f"code{j}"] = logits.argmax(axis=1).astype(np.int64)
    for j in range(2):
        columns[f"flag{j}"] = (rng.random(n) < 1 / (1 + np.exp(-z[:, j]))).astype(np.int64)
    for j in range(3):
        columns[f"noise{j}"] = rng.uniform(-1, 1, n)
    frame = pd.DataFrame(columns)
    score = (0.9 * frame["g0"] - 0.6 * frame["g3"] + 0.8 * np.log(frame["skew1"])
             + 0.7 * (frame["code0"] == 1) - 0.3 * frame["count1"] + 0.8 * frame["flag0"])
    y = (rng.random(n) < 1 / (1 + np.exp(-(score - score.mean()).to_numpy()))).astype(np.int64)
    return frame, y


def heavy_rows(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """12 columns: heavy-tailed correlated (Student t, 3 df), gamma, integers, two string
    categories and 4 % missing values in two columns; a three-class target."""
    z = _latent(rng, n, 2)
    scale = np.sqrt(3 / rng.chisquare(3, size=(n, 1)))  # a shared t scale: correlated tails
    loadings = np.random.default_rng(12).normal(size=(2, 6))
    frame = pd.DataFrame({f"t{j}": (z @ loadings[:, j] + rng.normal(size=n)) * scale[:, 0]
                          for j in range(6)})
    frame["gamma0"] = rng.gamma(2.0, np.exp(0.3 * z[:, 0]))
    frame["gamma1"] = rng.gamma(0.7, 2.0, n)
    frame["visits"] = rng.poisson(np.exp(1.5 + 0.3 * z[:, 1])).astype(np.int64)
    frame["age"] = np.clip(np.round(45 + 12 * z[:, 0] + rng.normal(0, 5, n)), 18, 90)
    regions = np.array(["north", "south", "east", "west", "centre"])
    frame["region"] = regions[np.minimum((rng.pareto(2.0, n) * 2).astype(int), 4)]
    frame["channel"] = np.where(z[:, 1] + rng.normal(size=n) > 0.5, "web",
                                np.where(rng.random(n) < 0.5, "phone", "shop"))
    for name in ("t4", "gamma1"):
        frame.loc[rng.random(n) < 0.04, name] = np.nan
    logits = np.column_stack([
        np.zeros(n),
        0.8 * np.nan_to_num(frame["t0"].to_numpy()) + 0.7 * (frame["region"] == "north"),
        0.6 * frame["t1"].to_numpy() - 0.5 * np.log1p(frame["gamma0"].to_numpy())
        + 0.6 * (frame["channel"] == "web")])
    y = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1).astype(np.int64)
    return frame, y


def generated(rows: Callable[[np.random.Generator, int], tuple[pd.DataFrame, np.ndarray]],
              sizes: tuple[int, int, int]) -> Callable[[np.random.Generator], Split]:
    def draw(rng: np.random.Generator) -> Split:
        parts = [rows(rng, n) for n in sizes]
        return Split(*parts[0], *parts[1], *parts[2])
    return draw


DATA_SETS: dict[str, DataSet] = {d.name: d for d in (
    DataSet("breast_cancer", "sklearn breast cancer: 569 rows, 30 numeric features, binary "
            "(reference 312, held-out 85, pool 172 per split)", "classification",
            breast_cancer, clean_splits=8, clean_per_split=2),
    DataSet("diabetes", "sklearn diabetes: 442 rows, 10 numeric features (sex: 2 values), "
            "regression (reference 221, held-out 66, pool 155)", "regression", diabetes,
            clean_splits=8, clean_per_split=2),
    DataSet("mixed25", "synthetic: 25 columns (correlated, log-normal, counts, integer codes, "
            "binaries, noise), binary; reference 1000, held-out 300, fresh pool",
            "classification", generated(mixed_rows, (1000, 300, 2000))),
    DataSet("heavy12", "synthetic: 12 columns (Student-t, gamma, integers, 2 string "
            "categories, 4 % missing in 2), 3 classes; reference 800, held-out 300, fresh "
            "pool", "classification", generated(heavy_rows, (800, 300, 2000)),
            categorical=("region", "channel")),
)}
