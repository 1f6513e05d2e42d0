"""greenbutton's own protocol: ``POST /predict`` with rows typed by the model signature."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..context import serving
from ..core import PredictionResult
from ..encoding import JSON, media_type_of, parse_json, read_body, to_jsonable
from ..responses import json_response

ACCEPTED_MEDIA_TYPES = frozenset({JSON})


async def predict(request: Request) -> Response:
    """``{"inputs": [row, ...], "params": {...}}`` → predictions, request id and model."""
    dataplane = serving(request).dataplane
    media_type_of(request, ACCEPTED_MEDIA_TYPES)
    body = await read_body(request, dataplane.settings.max_body_bytes)
    frame, params, values = dataplane.request_schema.parse(parse_json(body))
    result = await dataplane.predict(frame, params, request_id=request.state.request_id,
                                     values=values)
    return json_response(render_result(result))


def render_result(result: PredictionResult) -> dict[str, object]:
    """The ``/predict`` response body."""
    body: dict[str, object] = {
        "predictions": to_jsonable(result.predictions),
        "request_id": result.request_id,
        "model": {"name": result.model_name, "version": result.model_version},
    }
    for name, values in result.annotations.items():
        body.setdefault(name, values)  # an annotator never hides the core keys
    return body
