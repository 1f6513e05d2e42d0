"""Reference data: the sample a model was trained on, kept with it for the monitors.

Turns what the data scientist passes (DataFrame or 2-D array) into a named DataFrame,
computes a content digest and a compact per-column profile.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

MAX_REFERENCE_ROWS = 20_000
"""Rows kept with the model; larger reference sets are sampled (deterministically)."""


def as_frame(data: Any, *, what: str = "reference_data") -> pd.DataFrame:
    """``data`` as a DataFrame with string column names; arrays get ``feature_<i>`` names."""
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray) and data.ndim == 2:
        frame = pd.DataFrame(data, columns=[f"feature_{i}" for i in range(data.shape[1])])
    else:
        raise TypeError(f"{what} must be a pandas DataFrame or a 2-D numpy array, "
                        f"got {type(data).__name__}")
    if frame.empty:
        raise ValueError(f"{what} is empty")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        raise ValueError(f"{what} has duplicate column names")
    return frame


def sample_positions(rows: int, max_rows: int = MAX_REFERENCE_ROWS) -> np.ndarray:
    """Positions of the rows kept of ``rows``: all, or ``max_rows`` drawn with a fixed seed
    (the draw ``DataFrame.sample(random_state=0)`` makes), so the digest is reproducible."""
    if rows <= max_rows:
        return np.arange(rows)
    return np.random.RandomState(0).choice(rows, max_rows, replace=False)


def sample(frame: pd.DataFrame, max_rows: int = MAX_REFERENCE_ROWS) -> pd.DataFrame:
    """At most ``max_rows`` rows (see :func:`sample_positions`)."""
    positions = sample_positions(len(frame), max_rows)
    if len(positions) == len(frame):
        return frame
    return frame.iloc[positions].reset_index(drop=True)


def as_targets(values: Any, rows: int, *, what: str = "reference_targets") -> np.ndarray:
    """``values`` as one target per row of a ``rows``-row table: a 1-D array (a one-column
    table counts as one); ValueError naming ``what`` otherwise."""
    array = np.asarray(values.to_numpy() if isinstance(values, pd.DataFrame | pd.Series)
                       else values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be one target per row (1-D), got shape {array.shape}")
    if len(array) != rows:
        raise ValueError(f"{what} has {len(array)} targets for {rows} reference rows")
    return array


def digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the columns, dtypes and row contents (independent of the index)."""
    h = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        h.update(f"{name}\x1f{dtype}\x1e".encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Per-column summary: numeric columns get moments, quantiles and a histogram."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        entry: dict[str, Any] = {
            "dtype": str(series.dtype),
            "missing": int(series.isna().sum()),
        }
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.dropna().to_numpy(dtype=float)
            entry.update(_numeric_profile(values))
        else:
            counts = series.astype("string").value_counts(dropna=True).head(50)
            entry.update(kind="categorical", unique=int(series.nunique(dropna=True)),
                         top={str(k): int(v) for k, v in counts.items()})
        columns[str(name)] = entry
    return {"rows": len(frame), "digest": digest(frame), "columns": columns}


def _numeric_profile(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"kind": "numeric", "count": 0}
    quantiles = np.quantile(values, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    counts, edges = np.histogram(values, bins=min(20, max(1, np.unique(values).size)))
    return {
        "kind": "numeric",
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": dict(zip(["p1", "p5", "p25", "p50", "p75", "p95", "p99"],
                              map(float, quantiles), strict=True)),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }
