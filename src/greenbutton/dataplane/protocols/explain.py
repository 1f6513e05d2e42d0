"""``POST /explain``: the ``/predict`` request, answered with why the model predicted what it did.

The request is validated by the same :class:`~greenbutton.dataplane.schema.RequestSchema` as
``/predict`` and scored by the same ``DataPlane.predict`` (so batching, the request timeout,
row annotators and the payload log see it, with ``endpoint="/explain"``); the explanation is
then computed by the :class:`~greenbutton.explain.service.ExplainService` in
the serving context (``dataplane/context.py``) with the very model that answered, within the
explain limits.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import ModelNotReady
from ...explain.explanation import Explained
from ..context import serving
from ..core import PredictionResult
from ..encoding import JSON, media_type_of, parse_json, read_body, to_jsonable
from ..responses import json_response

ACCEPTED_MEDIA_TYPES = frozenset({JSON})
PATH = "/explain"


async def explain(request: Request) -> Response:
    """``{"inputs": [row, ...], "params": {...}}`` → predictions and their explanations."""
    context = serving(request)
    dataplane, service = context.dataplane, context.explain
    if service is None:
        raise ModelNotReady("explanations are not set up in this process")
    media_type_of(request, ACCEPTED_MEDIA_TYPES)
    body = await read_body(request, dataplane.settings.max_body_bytes)
    frame, params = dataplane.request_schema.to_frame(parse_json(body))
    model = dataplane.model  # the version that answers /predict in this process
    service.admit(model, frame)  # refuse before predicting when no slot is free
    result = await dataplane.predict(  # the response renders no row annotations
        frame, params, request_id=request.state.request_id, endpoint=PATH,
        with_annotations=False,
    )
    explained = await service.explain(model, frame, params)
    return json_response(render_explanation(result, explained))


def render_explanation(result: PredictionResult, explained: Explained) -> dict[str, Any]:
    """The ``/explain`` response body (see docs/explanations.md)."""
    predictions = to_jsonable(result.predictions)
    explanations = to_jsonable(explained.explanations)
    is_per_row = isinstance(predictions, list) and len(predictions) == result.rows
    if explained.attributions is not None and is_per_row:
        explanations = [
            {"prediction": prediction, **row}
            for prediction, row in zip(predictions, explanations, strict=True)
        ]
    return {
        "explainer": explained.explainer,
        "output_space": explained.output_space,
        "outputs": explained.outputs,
        "image_shape": list(explained.image_shape) if explained.image_shape else None,
        "explanations": explanations,
        "predictions": predictions,
        "request_id": result.request_id,
        "model": {"name": result.model_name, "version": result.model_version},
    }


DEFAULT_EXPLANATIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "One entry per input row.",
    "items": {
        "type": "object",
        "properties": {
            "prediction": {"description": "What /predict answers for this row."},
            "outputs": {
                "type": "object",
                "description": "Per output (class label, or 'prediction'): base_value + "
                "sum(attributions) == value, in output_space.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "base_value": {"type": "number"},
                        "value": {"type": "number"},
                        "attributions": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "Keyed by input column.",
                        },
                    },
                },
            },
        },
    },
}


def explain_response_schema(python_model: Any) -> dict[str, Any]:
    """``ExplainResponse``; ``explanations`` is the model's own ``explain_output_schema`` if any."""
    declared = getattr(type(python_model), "explain_output_schema", None)
    has_own = callable(getattr(python_model, "explain", None))
    explanations = declared if has_own and isinstance(declared, dict) else (
        {"description": "What the model's own explain() returns."}
        if has_own else DEFAULT_EXPLANATIONS_SCHEMA
    )
    nullable_string = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["explainer", "explanations", "predictions", "request_id", "model"],
        "properties": {
            "explainer": {
                "type": "string",
                "examples": ["TreeExplainer", "LinearExplainer", "PermutationExplainer",
                             "model.explain"],
            },
            "output_space": {**nullable_string, "examples": ["probability", "margin"]},
            "outputs": {"type": ["array", "null"], "items": {"type": "string"}},
            "image_shape": {"type": ["array", "null"], "items": {"type": "integer"}},
            "explanations": explanations,
            "predictions": {"type": "array"},
            "request_id": {"type": "string"},
            "model": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "version": nullable_string},
            },
        },
    }
