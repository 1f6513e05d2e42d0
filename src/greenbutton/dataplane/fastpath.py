"""A fast path past MLflow's per-call schema enforcement, for inputs that are plainly valid.

``PyFuncModel.predict`` checks every column of every call against the signature, which for
a 64-column model costs several times the prediction itself. :class:`FastConformer`
handles the common case in one vectorised step: a column signature whose columns all have
a numeric or boolean type, and a DataFrame holding those columns with dtypes that cast
safely. :class:`TensorConformer` does the same for one unnamed tensor and a NumPy array
already of its dtype and shape. Anything else returns None and goes through MLflow's own
enforcement, so errors and edge cases keep MLflow's exact behaviour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import ColSpec, DataType, Schema, TensorSpec

from ..errors import SchemaMismatch

FAST_TYPES: dict[DataType, np.dtype[Any]] = {
    DataType.boolean: np.dtype(bool),
    DataType.integer: np.dtype(np.int32),
    DataType.long: np.dtype(np.int64),
    DataType.float: np.dtype(np.float32),
    DataType.double: np.dtype(np.float64),
}


class FastConformer:
    """Casts a plainly valid DataFrame to the signature's columns and dtypes, else says None."""

    def __init__(self, names: list[str], dtypes: list[np.dtype[Any]]) -> None:
        self.names = names
        self.dtypes = dtypes
        self.dtype = dtypes[0] if len(set(dtypes)) == 1 else None
        """The one dtype of every column, or None when the columns' types differ."""
        self._name_index = pd.Index(names)
        self._name_set = frozenset(names)

    def index_for(self, columns: list[Any]) -> pd.Index | list[Any]:
        """The prebuilt column index when ``columns`` are the signature's names, in order.

        Building a DataFrame from a list of names converts it to an index on every call, which
        for 64 string columns costs several times the rest of the frame.
        """
        return self._name_index if columns == self.names else columns

    @classmethod
    def from_schema(cls, schema: Schema | None) -> FastConformer | None:
        """A conformer for ``schema``, or None when its shape is not the simple case."""
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        specs = schema.inputs
        if not all(isinstance(s, ColSpec) and s.required for s in specs):
            return None
        types = [s.type for s in specs]
        if not all(isinstance(t, DataType) and t in FAST_TYPES for t in types):
            return None
        return cls([str(s.name) for s in specs], [FAST_TYPES[t] for t in types])  # type: ignore[index]

    def conform(self, frame: pd.DataFrame, *, is_parsed: bool = False) -> pd.DataFrame | None:
        """``frame`` with exactly the signature's columns in the signature's dtypes, or None.

        ``is_parsed``: the frame was just parsed from JSON, where MLflow's parser itself casts
        integers to a float column's type, so any integer dtype is accepted for floats.
        """
        if not frame.columns.equals(self._name_index):
            if not self._name_set <= set(frame.columns):
                return None
            frame = frame[self.names]
        actual = list(frame.dtypes)
        if actual == self.dtypes:
            return frame
        pairs = zip(actual, self.dtypes, strict=True)
        if not all(_casts_safely(have, want, is_parsed) for have, want in pairs):
            return None
        if self.dtype is not None:
            return frame.astype(self.dtype)
        return frame.astype(dict(zip(self.names, self.dtypes, strict=True)))


def _casts_safely(dtype: Any, target: np.dtype[Any], is_parsed: bool) -> bool:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        return False
    if (dtype.kind == "b") != (target.kind == "b"):
        return False  # booleans are never numbers here, nor numbers booleans
    if dtype.kind in "iu" and target.kind == "f":
        # MLflow refuses int64 -> float64 at predict time (precision), casts when parsing
        return is_parsed or dtype.itemsize < target.itemsize
    return bool(np.can_cast(dtype, target, casting="safe"))


FLOAT32 = np.dtype(np.float32)


def array_of(values: Any, dtype: np.dtype[Any]) -> np.ndarray:
    """``np.array(values, dtype=dtype)``; float32 is built without NumPy's overflow warning,
    for the caller refuses what :func:`overflowed` finds (other dtypes cannot overflow here:
    an integer past its type raises OverflowError)."""
    if dtype != FLOAT32:
        return np.array(values, dtype=dtype)
    with np.errstate(over="ignore"):
        return np.array(values, dtype=dtype)


def overflowed(array: np.ndarray) -> bool:
    """Whether a float32 array built from JSON numbers holds an inf: a finite number past
    float32, or an inf sent (the caller tells which); always False for other dtypes, so the
    float64 and integer request paths pay nothing."""
    return array.dtype == FLOAT32 and bool(np.isinf(array).any())


def fits(values: np.ndarray, target: np.dtype[Any]) -> bool:
    """Whether casting ``values`` (numbers as parsed from JSON: int64 or float64) to
    ``target`` keeps every one: NumPy and pandas wrap an integer outside the target's range
    around (2**31 as int32 is -2**31) and turn a finite number beyond float32's into inf,
    silently. Missing and infinite values are left to the null and type checks."""
    if values.size == 0 or values.dtype.kind not in "iuf" or target.kind not in "iuf":
        return True
    if target.kind == "f":
        if target.itemsize >= 8 or values.dtype.kind != "f":
            return True  # float64 holds anything parsed; int64 is far inside float32
        finite = values[np.isfinite(values)]
        return not finite.size or float(np.abs(finite).max()) <= float(np.finfo(target).max)
    info = np.iinfo(target)
    if values.dtype.kind in "iu":
        return bool(info.min <= values.min() and values.max() <= info.max)
    finite = values[np.isfinite(values)]
    # float(info.max) + 1 is the exact power of two just past the range (2**31, 2**63)
    return not finite.size or bool(finite.min() >= info.min
                                   and finite.max() < float(info.max) + 1)


def refuse_unfit(name: str, values: np.ndarray, target: np.dtype[Any]) -> None:
    """Refuse (422, naming the column) ``values`` that casting to ``target`` would change
    (see :func:`fits`)."""
    if fits(values, target):
        return
    flat = values.reshape(-1)
    first = next(v for v in flat.tolist() if not fits(np.array([v], dtype=flat.dtype), target))
    raise SchemaMismatch(f"{name}: {first!r} does not fit the column's type ({target.name})",
                         field=str(name))


class TensorConformer:
    """Passes a NumPy array that already matches one unnamed tensor spec, else says None.

    The same check as MLflow's ``_enforce_tensor_spec``: equal dtype, equal shape except
    where the spec says -1.
    """

    def __init__(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        self.dtype = dtype
        self.shape = shape

    @classmethod
    def from_schema(cls, schema: Schema | None) -> TensorConformer | None:
        """A conformer for a schema of one unnamed numeric tensor, else None."""
        if schema is None or not schema.is_tensor_spec() or schema.has_input_names():
            return None
        if len(schema.inputs) != 1:
            return None
        spec = schema.inputs[0]
        if not isinstance(spec, TensorSpec) or spec.type.kind not in "biuf":
            return None
        return cls(spec.type, tuple(spec.shape))

    def conform(self, array: Any) -> np.ndarray | None:
        """``array`` when MLflow's enforcement would hand it to the model unchanged; for a
        DataFrame of two columns or more, its values, as MLflow's enforcement takes them."""
        if isinstance(array, pd.DataFrame):
            rows, width = array.shape
            if width < 2 or rows == 0 or self.shape != (-1, width):
                return None  # MLflow reshapes one column and refuses the rest
            array = array.to_numpy()
        if not isinstance(array, np.ndarray) or array.dtype != self.dtype:
            return None
        if array.ndim != len(self.shape):
            return None
        if any(want not in (-1, have) for want, have in zip(self.shape, array.shape, strict=True)):
            return None
        return array
