"""Request bodies in, JSON out: size limit, media types, orjson parsing and rendering."""

from __future__ import annotations

import base64
import datetime
from typing import Any, TypeVar

import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ..errors import InvalidInput, MalformedRequest, PayloadTooLarge, UnsupportedMediaType

JSON = "application/json"
CSV = "text/csv"
Body = TypeVar("Body", bound=BaseModel)
RENDER_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


async def read_body(request: Request, max_bytes: int, *, may_be_empty: bool = False) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``, and
    with 400 when empty unless ``may_be_empty`` (a proxy passes on whatever it is sent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput("Content-Length is not a number", field="content-length")
        if int(declared) > max_bytes:
            raise PayloadTooLarge(
                f"body of {declared} bytes exceeds the limit of {max_bytes}", field="body"
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes", field="body")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not may_be_empty and not body.strip():
        raise MalformedRequest("request body is empty", field="body")
    return body


def media_type_of(request: Request, accepted: frozenset[str]) -> str:
    """The request's media type if it is one of ``accepted`` (charset UTF-8), else 415."""
    header = request.headers.get("content-type", "")
    media_type, *parameters = (part.strip() for part in header.split(";"))
    media_type = media_type.lower()
    if media_type not in accepted:
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"content type {shown!r} not accepted; send {' or '.join(sorted(accepted))}",
            field="content-type",
        )
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType("only UTF-8 bodies are accepted", field="content-type")
    return media_type


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; the error says where parsing stopped."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest(
            f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            field="body",
        ) from None


async def read_json_body(request: Request, model: type[Body], max_bytes: int) -> Body:
    """A JSON request body (415 for another media type, 413 above ``max_bytes``) validated
    into ``model``; 422 naming the first offending field (``spec.routes.0.weight``)."""
    media_type_of(request, frozenset({JSON}))
    body = parse_json(await read_body(request, max_bytes))
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


def render_json(content: Any) -> bytes:
    """Encode ``content`` with orjson, turning numpy, pandas and bytes values into JSON."""
    return orjson.dumps(content, default=_jsonable_value, option=RENDER_OPTIONS)


def to_jsonable(predictions: Any) -> Any:
    """Predictions in MLflow's response shape: arrays to lists, DataFrames to records."""
    if isinstance(predictions, np.ndarray):
        return predictions.tolist()
    if isinstance(predictions, pd.DataFrame):
        return predictions.to_dict(orient="records")
    if isinstance(predictions, pd.Series):
        return pd.DataFrame(predictions).to_dict(orient="records")
    return predictions


def _jsonable_value(value: Any) -> Any:
    # called by orjson for what it cannot encode natively, as MLflow's NumpyEncoder does
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(value).decode("ascii")
    if isinstance(value, pd.Timestamp | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, pd.DataFrame | pd.Series):
        return to_jsonable(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
