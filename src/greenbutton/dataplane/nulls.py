"""Nulls in model input: refused with the column's name unless the signature allows them.

MLflow's parsers turn a JSON ``null`` (and ``NaN``) in a numeric column into NaN and hand it
to the model, which then fails with an error of its own (a 500 for the client). Every route
calls :meth:`NullCheck.check` before the model instead, the same rule for all of them: a
column the signature marks optional (``required=False``, which MLflow infers for columns
with missing values) takes nulls; a required column or a tensor does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import Schema

from ..errors import SchemaMismatch


class NullCheck:
    """Finds the first null a signature does not allow; ``check`` raises SchemaMismatch."""

    def __init__(self, required: frozenset[str] | None) -> None:
        self.required = required
        """Columns that refuse nulls; None: every column and tensor does."""

    @classmethod
    def from_schema(cls, schema: Schema | None) -> NullCheck | None:
        """The check for ``schema``; None without a signature (nothing says what is allowed)."""
        if schema is None:
            return None
        if schema.has_input_names() and not schema.is_tensor_spec():
            return cls(frozenset(str(name) for name in schema.required_input_names()))
        return cls(None)

    def check(self, data: Any, values: np.ndarray | None = None) -> None:
        """Raise SchemaMismatch naming the first column of ``data`` holding a refused null.

        ``values``: ``data``'s rows as one array, when the caller has it (one check for all).
        """
        if values is not None and values.dtype.kind in "biu":
            return  # integers and booleans hold no nulls
        if values is not None and values.dtype.kind == "f" and not np.isnan(values).any():
            return
        for name, column in self._columns(data):
            if self.required is not None and name not in self.required:
                continue
            row = _first_null(column)
            if row is not None:
                field = f"{name}" if self.required is not None else f"column {name}"
                raise SchemaMismatch(
                    f"{field}: null at row {row}; the model signature requires a value",
                    field=str(name),
                )

    def _columns(self, data: Any) -> Iterator[tuple[str, np.ndarray]]:
        if isinstance(data, pd.DataFrame):
            for position, name in enumerate(data.columns):
                yield str(name), data.iloc[:, position].to_numpy()
        elif isinstance(data, dict):
            for name, column in data.items():
                yield str(name), np.asarray(column)
        elif isinstance(data, np.ndarray) and data.ndim >= 2:
            for position in range(data.shape[1]):
                yield str(position), data[:, position]
        elif isinstance(data, (np.ndarray, pd.Series, list)):
            yield "0", np.asarray(data)


def _first_null(column: np.ndarray) -> int | None:
    if column.dtype.kind in "biuSU":
        return None
    if column.dtype.kind in "fc":
        mask = np.isnan(column)
    elif column.dtype.kind in "mM":
        mask = np.isnat(column)
    else:
        try:
            mask = pd.isna(column)
        except (TypeError, ValueError):  # objects pandas cannot test: leave them to the model
            return None
    if mask.ndim > 1:
        mask = mask.reshape(len(mask), -1).any(axis=1)
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None
