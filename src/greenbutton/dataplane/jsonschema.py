"""JSON Schema (OpenAPI 3.1 components) for ``/predict`` requests, from a RequestSchema."""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.types.schema import DataType, ParamSchema

from .schema import COLUMN_JSON_SCHEMAS, Column, RequestSchema

REF = "#/components/schemas/"


def predict_components(schema: RequestSchema, prefix: str = "Predict") -> dict[str, Any]:
    """``<prefix>Request`` and the two row shapes it accepts: object and array."""
    if schema.columns is None:
        rows: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "array"}]}
        components: dict[str, Any] = {}
    else:
        rows = {"oneOf": [{"$ref": f"{REF}{prefix}RowObject"}, {"$ref": f"{REF}{prefix}RowArray"}]}
        components = {
            f"{prefix}RowObject": row_object(schema.columns),
            f"{prefix}RowArray": row_array(schema.columns),
        }
    request = {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {"type": "array", "minItems": 1, "maxItems": schema.max_rows, "items": rows},
            "params": params_object(schema.params),
        },
    }
    return {f"{prefix}Request": request, **components}


def row_object(columns: list[Column]) -> dict[str, Any]:
    """One row keyed by column name."""
    return {
        "type": "object",
        "description": "One row keyed by column name.",
        "properties": {column.name: column.json_schema() for column in columns},
        "required": [column.name for column in columns if column.is_required],
        "additionalProperties": False,
    }


def row_array(columns: list[Column]) -> dict[str, Any]:
    """One row as its values in column order."""
    return {
        "type": "array",
        "description": "One row as values in column order: "
        + ", ".join(column.name for column in columns),
        "prefixItems": [column.json_schema() for column in columns],
        "minItems": len(columns),
        "maxItems": len(columns),
        "items": False,
    }


def params_object(params: ParamSchema | None) -> dict[str, Any]:
    """The ``params`` object, typed by the model's param schema when it has one."""
    if params is None:
        return {"type": "object", "description": "Inference parameters passed to predict."}
    properties = {}
    for spec in params.params:
        dtype = spec.dtype
        value = dict(COLUMN_JSON_SCHEMAS[dtype]) if isinstance(dtype, DataType) else {}
        if spec.shape is not None:
            value = {"type": "array", "items": value}
        properties[spec.name] = {**value, "default": _jsonable(spec.default)}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value if isinstance(value, bool | int | float | str | list | dict | None) else str(value)
