"""The OpenAPI 3.1 document of a serving process, built from the model's signature, and /docs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .dataplane import DataPlane
from .encoding import CSV, JSON, to_jsonable
from .jsonschema import predict_components
from .protocols.explain import explain_response_schema
from .responses import json_response

REF = "#/components/schemas/"
EXAMPLE_ROWS = 2
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "examples": ["schema_mismatch"]},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"], "examples": ["inputs[3].pixel_5"]},
                "request_id": {"type": ["string", "null"]},
            },
        }
    },
}
PREDICT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["predictions", "request_id", "model"],
    "properties": {
        "predictions": {"type": "array", "description": "One prediction per input row."},
        "request_id": {"type": "string"},
        "model": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": ["string", "null"]}},
        },
    },
}
INVOCATIONS_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "MLflow scoring protocol: exactly one of the four input formats.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {"columns": {"type": "array"}, "data": {"type": "array"}},
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {},
        "inputs": {},
        "params": {"type": "object"},
    },
    "minProperties": 1,
}
INVOCATIONS_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {}},
}


def build_openapi(dataplane: DataPlane) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``/predict``'s request schema comes from the signature."""
    model = dataplane.model
    components = {
        **predict_components(dataplane.request_schema),
        "PredictResponse": PREDICT_RESPONSE_SCHEMA,
        "InvocationsRequest": INVOCATIONS_REQUEST_SCHEMA,
        "InvocationsResponse": INVOCATIONS_RESPONSE_SCHEMA,
        "Error": ERROR_SCHEMA,
        "ExplainResponse": explain_response_schema(model.python_model),
    }
    predict_body: dict[str, Any] = {"schema": {"$ref": f"{REF}PredictRequest"}}
    example = _request_example(model.input_example)
    if example is not None:
        predict_body["example"] = example
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{model.name} (greenbutton)", "version": model.version or "unversioned"},
        "paths": {
            "/predict": {
                "post": _operation(
                    "Predict",
                    {JSON: predict_body},
                    "PredictResponse",
                    "Score rows given as objects keyed by column or as arrays in column order.",
                )
            },
            "/invocations": {
                "post": _operation(
                    "MLflow scoring protocol",
                    {
                        JSON: {"schema": {"$ref": f"{REF}InvocationsRequest"}},
                        CSV: {"schema": {"type": "string"}},
                    },
                    "InvocationsResponse",
                    "Score a request in MLflow's format, as `mlflow models serve` does.",
                )
            },
            "/explain": {
                "post": _operation(
                    "Explain",
                    {JSON: predict_body},
                    "ExplainResponse",
                    "The /predict request, answered with per-feature attributions (SHAP) or "
                    "the model's own explain(); its own concurrency limit (503) and timeout "
                    "(504).",
                )
            },
            "/health/live": {"get": _plain("Liveness", "The process is up.")},
            "/health/ready": {"get": _plain("Readiness", "Model loaded and warmed up (else 503).")},
            "/metrics": {"get": _plain("Metrics", "Prometheus text exposition.")},
        },
        "components": {"schemas": components},
    }


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``."""
    return json_response(build_openapi(request.app.state.dataplane))


async def docs(request: Request) -> Response:
    """``GET /docs``: Swagger UI from the locally mounted swagger_ui_bundle files.

    Links are relative, so the page also works behind the gateway's ``/endpoints/<name>/``.
    """
    return HTMLResponse(SWAGGER_PAGE)


def _operation(summary: str, content: dict[str, Any], response: str, text: str) -> dict[str, Any]:
    error = {"content": {JSON: {"schema": {"$ref": f"{REF}Error"}}}}
    return {
        "summary": summary,
        "description": text,
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {
                "description": "Predictions.",
                "content": {JSON: {"schema": {"$ref": f"{REF}{response}"}}},
            },
            "4XX": {"description": "The request was refused.", **error},
            "5XX": {"description": "The model could not answer.", **error},
        },
    }


def _plain(summary: str, text: str) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": {"description": text}}}


def _request_example(input_example: Any) -> dict[str, Any] | None:
    if not hasattr(input_example, "head") or not hasattr(input_example, "to_dict"):
        return None
    return {"inputs": to_jsonable(input_example.head(EXAMPLE_ROWS))}


SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API docs</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
"""
