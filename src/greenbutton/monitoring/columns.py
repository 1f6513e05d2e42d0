"""What kind of values each input column holds, and their categories as comparable labels.

A column is *categorical* when it is declared so (``log_model(categorical=[...])``), holds
strings, categories or booleans, or holds numbers with few distinct values, each common
(integer codes, flags): at most :data:`MAX_CODES` values, each in at least
:data:`ROWS_PER_CODE` reference rows. A rare value marks an ordinal scale with a thin tail
(a pixel intensity, a count) rather than a code, and a short continuous column is not
mistaken for codes either. Categorical columns get a chi-squared test and an unseen-category
check; the others KS and Mann-Whitney tests and a range check.
Every column also has a value *type* (integer, number, boolean, string) that a window's
values are checked against.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import numpy as np
import pandas as pd

MAX_CODES = 10
"""Numeric columns with at most this many distinct values are inferred to be codes."""
ROWS_PER_CODE = 5
"""…each of them in at least this many reference rows."""


class ValueType(StrEnum):
    """The type of a column's values in the reference."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"


def is_categorical(series: pd.Series) -> bool:
    """Strings, categories and booleans (by dtype); numeric detectors leave these out."""
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def categorical_columns(reference: pd.DataFrame, declared: Iterable[str] = ()) -> list[str]:
    """The columns tested as categories: declared, non-numeric, or numeric codes."""
    wanted = set(declared)
    unknown = wanted - set(reference.columns)
    if unknown:
        raise ValueError(f"categorical columns {sorted(unknown)} are not in the reference")
    return [c for c in reference.columns
            if c in wanted or is_categorical(reference[c]) or _is_coded(reference[c])]


def _is_coded(series: pd.Series) -> bool:
    counts = series.value_counts(dropna=True)
    return 0 < len(counts) <= MAX_CODES and int(counts.min()) >= ROWS_PER_CODE


def value_type(series: pd.Series) -> ValueType:
    """The type every reference value of ``series`` has."""
    if pd.api.types.is_bool_dtype(series):
        return ValueType.BOOLEAN
    if not pd.api.types.is_numeric_dtype(series):
        return ValueType.STRING
    values = series.dropna().to_numpy(dtype=float)
    if values.size and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return ValueType.INTEGER
    return ValueType.NUMBER


def type_violations(series: pd.Series, expected: ValueType) -> np.ndarray:
    """Per row: is the (present) value not of the ``expected`` type?"""
    present: np.ndarray = series.notna().to_numpy()
    if expected in (ValueType.STRING, ValueType.BOOLEAN):
        fits = _is_string if expected is ValueType.STRING else _is_boolean
        values = series.to_numpy(dtype=object)
        fitting: np.ndarray = np.fromiter(map(fits, values), bool, len(values))
        misfit: np.ndarray = present & ~fitting
        return misfit
    numbers = numeric_values(series)
    wrong: np.ndarray = present & ~np.isfinite(numbers)  # text, or ±inf
    if expected is ValueType.INTEGER:
        with np.errstate(invalid="ignore"):
            wrong |= np.isfinite(numbers) & (numbers != np.round(numbers))
    return wrong


def _is_string(value: object) -> bool:
    return isinstance(value, str)


def _is_boolean(value: object) -> bool:
    return isinstance(value, bool | np.bool_) or value in (0, 1)


def numeric_values(series: pd.Series) -> np.ndarray:
    """``series`` as floats; missing values and text as NaN."""
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        series = pd.to_numeric(series, errors="coerce")
    values: np.ndarray = series.to_numpy(dtype=float, na_value=np.nan)
    return values


def labels(series: pd.Series) -> pd.Series:
    """Present values as category labels; numbers that are whole print as integers, so a
    code read back as ``3.0`` (its column had a missing value) is still ``"3"``."""
    return series.dropna().map(_label).astype(object)


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def category_counts(series: pd.Series) -> dict[str, int]:
    """Label → count of the present values."""
    counts = labels(series).value_counts()
    return {str(k): int(v) for k, v in counts.items()}
