"""MLflow's scoring protocol on ``POST /invocations``, parsed by MLflow's own functions.

JSON bodies carry exactly one of ``dataframe_split``, ``dataframe_records``, ``instances``
or ``inputs`` (plus optional ``params``); ``text/csv`` bodies are a DataFrame's CSV. The
answer is MLflow's ``{"predictions": ...}``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.types import Schema
from mlflow.types.schema import DataType
from mlflow.utils.proto_json_utils import (
    cast_df_types_according_to_schema,
    dataframe_from_parsed_json,
)
from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidInput, PayloadTooLarge, SchemaMismatch
from ..context import serving
from ..core import mlflow_reason
from ..encoding import CSV, JSON, media_type_of, parse_json, read_body, to_jsonable
from ..fastparse import ScoringParser
from ..fastpath import FAST_TYPES, refuse_unfit
from ..responses import json_response

ACCEPTED_MEDIA_TYPES = frozenset({JSON, CSV})
INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


async def invocations(request: Request) -> Response:
    """Score a request in any MLflow scoring format; answer ``{"predictions": [...]}``."""
    dataplane = serving(request).dataplane
    media_type = media_type_of(request, ACCEPTED_MEDIA_TYPES)
    body = await read_body(request, dataplane.settings.max_body_bytes)
    metadata = dataplane.model.pyfunc.metadata
    schema = metadata.get_input_schema()  # type: ignore[no-untyped-call]
    values = None
    if media_type == CSV:
        data, params = parse_csv(body, schema), None
    else:
        is_type_hinted = getattr(metadata, "_is_signature_from_type_hint", lambda: False)()
        data, params, values = parse_scoring_json(
            body, schema, is_type_hinted=is_type_hinted, parser=dataplane.model.parser
        )
    if hasattr(data, "__len__") and len(data) > dataplane.settings.max_rows:
        raise PayloadTooLarge(
            f"{len(data)} rows, at most {dataplane.settings.max_rows} accepted", field="rows"
        )
    # MLflow's response shape has no place for row annotations (outlier flags): sinks get
    # the record without them and the payload log scores them in batches
    result = await dataplane.predict(
        data, params, request_id=request.state.request_id, endpoint="/invocations",
        with_annotations=False, values=values,
    )
    return json_response({"predictions": to_jsonable(result.predictions)})


def parse_scoring_json(
    body: bytes,
    schema: Schema | None,
    *,
    is_type_hinted: bool = False,
    parser: ScoringParser | None = None,
) -> tuple[Any, dict[str, Any] | None, np.ndarray | None]:
    """Model input and params from a JSON scoring request, as MLflow's scoring server parses
    it, and the input's rows as one array when they were built from one (else None).

    With a ``parser``, plain numbers in any format are built in a few vectorised steps
    instead of MLflow's column-by-column cast (the same result, a fraction of the time).
    """
    payload = _decode(body)
    if not isinstance(payload, dict):
        raise InvalidInput("body: expected a JSON object with one input format key", field="body")
    formats = [key for key in INPUT_FORMATS if key in payload]
    if len(formats) != 1:
        raise InvalidInput(
            f"body: expected exactly one of {', '.join(INPUT_FORMATS)}; got keys {sorted(payload)}",
            field="body",
        )
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("params: expected an object", field="params")
    if is_type_hinted:  # MLflow passes type-hinted models the raw "inputs" value
        if formats[0] != "inputs":
            raise InvalidInput("body: this model takes its data under 'inputs'", field="body")
        return payload["inputs"], params, None
    if parser is not None:
        fast = parser.parse(formats[0], payload[formats[0]])
        if fast is not None:
            return fast[0], params, fast[1]
    try:
        data = _parse_with_mlflow(formats[0], payload[formats[0]], schema)
    except (MlflowException, ValueError, TypeError, KeyError) as error:  # or pandas refusing
        raise SchemaMismatch(f"{formats[0]}: {mlflow_reason(error)}", field=formats[0]) from error
    return data, params, None


def _parse_with_mlflow(input_format: str, value: Any, schema: Schema | None) -> Any:
    """MLflow's parse of ``value``; a DataFrame format's two steps (pandas builds the frame,
    then each column is cast to its signature type) are taken one at a time, so a number
    the cast would change is refused in between: pandas wraps 2**31 cast to int32 around to
    -2**31, where MLflow's ``instances``/``inputs`` parse refuses it."""
    if input_format not in ("dataframe_split", "dataframe_records") or schema is None:
        return scoring_server.infer_and_parse_data({input_format: value},
                                                   schema)  # type: ignore[arg-type]
    frame = dataframe_from_parsed_json(  # type: ignore[no-untyped-call]
        value, input_format.removeprefix("dataframe_"))
    for name, target in _column_targets(schema, frame):
        refuse_unfit(str(name), _numbers(frame[name]), target)
    return cast_df_types_according_to_schema(frame, schema)  # type: ignore[no-untyped-call]


def _column_targets(schema: Schema, frame: pd.DataFrame) -> list[tuple[Any, np.dtype[Any]]]:
    """The frame's columns that the cast turns into numbers, and their dtype: every column
    for one tensor, the signature's number columns otherwise."""
    if schema.is_tensor_spec():
        dtype = schema.inputs[0].type
        if len(schema.inputs) != 1 or not isinstance(dtype, np.dtype):
            return []
        return [(name, dtype) for name in frame.columns]
    return [(spec.name, FAST_TYPES[spec.type]) for spec in schema.inputs
            if isinstance(spec.type, DataType) and spec.type in FAST_TYPES
            and spec.name in frame.columns]


def _numbers(column: pd.Series) -> np.ndarray:
    """The column's numbers (not booleans), as the array pandas made or as float64."""
    if column.dtype.kind in "iuf":
        return np.asarray(column.to_numpy())
    return np.array([v for v in column.tolist() if type(v) in (int, float)], dtype=np.float64)


def parse_csv(body: bytes, schema: Schema | None) -> pd.DataFrame:
    """A DataFrame from a CSV body, as MLflow's scoring server parses it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body: CSV is not valid UTF-8", field="body") from None
    try:
        frame: pd.DataFrame = scoring_server.parse_csv_input(
            io.StringIO(text),
            schema,  # type: ignore[arg-type]
        )
    except MlflowException as error:
        raise InvalidInput(f"body: {mlflow_reason(error)}", field="body") from error
    return frame


def _decode(body: bytes) -> Any:
    try:
        return parse_json(body)
    except InvalidInput:
        # MLflow's own clients write NaN and Infinity, which only the standard library reads
        try:
            return json.loads(body)
        except ValueError:
            pass
        raise
