"""Open Inference Protocol (v2) tensors to and from pandas/numpy, typed by the MLflow signature.

The mapping is exact where both sides have the type, so nothing is silently reinterpreted:

=================  ==========  =====================================================
MLflow type        v2 dtype    notes
=================  ==========  =====================================================
boolean            BOOL        JSON ``true``/``false`` only (0/1 are refused)
integer (int32)    INT32       INT8/INT16/UINT8/UINT16 widen; values checked to fit
long (int64)       INT64       any narrower integer widens
float (float32)    FP32        FP16 widens
double (float64)   FP64        FP16/FP32 and any integer widen
string             BYTES       JSON strings
binary             BYTES       JSON strings, UTF-8; ``parameters.content_type: base64``
datetime           BYTES       ISO 8601 strings
=================  ==========  =====================================================
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import DataType

from ..errors import SchemaMismatch
from .fastpath import fits

V2_OF_MLFLOW: dict[DataType, str] = {
    DataType.boolean: "BOOL",
    DataType.integer: "INT32",
    DataType.long: "INT64",
    DataType.float: "FP32",
    DataType.double: "FP64",
    DataType.string: "BYTES",
    DataType.binary: "BYTES",
    DataType.datetime: "BYTES",
}
NUMPY_OF_V2: dict[str, str] = {
    "BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
}
V2_OF_NUMPY: dict[str, str] = {v: k for k, v in NUMPY_OF_V2.items()}
WIDENS_TO: dict[str, frozenset[str]] = {
    "INT32": frozenset({"INT8", "INT16", "UINT8", "UINT16", "INT32"}),
    "INT64": frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"}),
    "FP32": frozenset({"FP16", "FP32"}),
    "FP64": frozenset({"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                       "UINT8", "UINT16", "UINT32"}),
}


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype (strings and objects are BYTES)."""
    return V2_OF_NUMPY.get(dtype.name, "BYTES")


def decode_tensor(tensor: dict[str, Any], expected: str | None, where: str) -> np.ndarray:
    """A v2 input tensor as a numpy array of its shape, checked against ``expected`` dtype."""
    datatype = str(tensor.get("datatype", "")).upper()
    if datatype not in NUMPY_OF_V2:
        raise SchemaMismatch(f"{where}: unknown datatype {datatype!r}", field=where)
    if expected is not None and datatype != expected and datatype not in WIDENS_TO.get(
            expected, frozenset()):
        raise SchemaMismatch(f"{where}: datatype {datatype} where the model takes {expected}",
                             field=where)
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise SchemaMismatch(f"{where}: shape must be a list of non-negative integers",
                             field=where)
    data = _flatten(tensor.get("data"))
    if len(data) != int(np.prod(shape, dtype=np.int64)):
        raise SchemaMismatch(f"{where}: {len(data)} values do not fill shape {shape}", field=where)
    target = expected or datatype
    array = _typed(data, datatype, target, where, tensor.get("parameters") or {})
    return array.reshape(shape)


def encode_tensor(name: str, values: Any, datatype: str | None = None) -> dict[str, Any]:
    """A v2 output tensor from an array-like (DataFrame column, Series, ndarray, list)."""
    array = np.asarray(values)
    shape = list(array.shape)
    if datatype is None or datatype == "BYTES":
        datatype = v2_datatype(array.dtype)
    if datatype != "BYTES":
        try:
            data = array.astype(NUMPY_OF_V2[datatype]).reshape(-1).tolist()
            return {"name": name, "datatype": datatype, "shape": shape, "data": data}
        except (TypeError, ValueError):  # not what the signature says: report what it is
            datatype = v2_datatype(array.dtype)
            if datatype != "BYTES":
                data = array.reshape(-1).tolist()
                return {"name": name, "datatype": datatype, "shape": shape, "data": data}
    data = [_text(v) for v in array.reshape(-1).tolist()]
    return {"name": name, "datatype": "BYTES", "shape": shape, "data": data}


def column(array: np.ndarray, mlflow_type: DataType | None, where: str) -> Any:
    """A 1-D column for a DataFrame: datetimes parsed, others as they are."""
    flat = array.reshape(-1) if array.ndim != 1 else array
    if mlflow_type is DataType.datetime:
        try:
            return pd.to_datetime(pd.Series(flat))
        except (ValueError, TypeError) as error:
            raise SchemaMismatch(f"{where}: not ISO 8601 datetimes", field=where) from error
    if mlflow_type is DataType.binary:
        return np.asarray([v.encode("utf-8") if isinstance(v, str) else v for v in flat],
                          dtype=object)
    return flat


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        return list(np.asarray(data, dtype=object).reshape(-1))
    return data


def _typed(data: list[Any], datatype: str, target: str, where: str,
           parameters: dict[str, Any]) -> np.ndarray:
    kinds = {type(v) for v in data}
    if datatype == "BOOL":
        if not kinds <= {bool}:
            raise SchemaMismatch(f"{where}: BOOL data must be true/false", field=where)
        return np.asarray(data, dtype=bool)
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise SchemaMismatch(f"{where}: BYTES data must be strings", field=where)
        if parameters.get("content_type") == "base64":
            return _from_base64(data, where)
        return np.asarray(data, dtype=object)
    allowed = {int} if datatype[0] in "IU" else {int, float}
    if not kinds <= allowed:
        raise SchemaMismatch(f"{where}: {datatype} data must be numbers of that type",
                             field=where)
    raw = np.asarray(data, dtype=np.float64 if float in kinds else np.int64)
    dtype = np.dtype(NUMPY_OF_V2[target])
    if not fits(raw, dtype):  # NumPy would wrap integers around, make a float32 inf
        raise SchemaMismatch(f"{where}: values out of range for {target}", field=where)
    return raw.astype(dtype)


def _from_base64(data: list[str], where: str) -> np.ndarray:
    try:
        return np.asarray([base64.b64decode(v, validate=True) for v in data], dtype=object)
    except (binascii.Error, ValueError) as error:
        raise SchemaMismatch(f"{where}: invalid base64", field=where) from error


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).isoformat()
    return value
