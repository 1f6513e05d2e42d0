"""The OpenAPI 3.1 document of a serving process, built from the model's signature, and /docs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .context import serving
from .core import DataPlane
from .encoding import CSV, JSON, to_jsonable
from .hooks import route_doc
from .jsonschema import predict_components
from .protocols.explain import explain_response_schema
from .responses import ERROR_SCHEMA, json_response

REF = "#/components/schemas/"
EXAMPLE_ROWS = 2
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


V2_INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Open Inference Protocol v2 request.",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": {
            "type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {"name": {"type": "string"}, "shape": {
                "type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string"}, "data": {}, "parameters": {"type": "object"}}}},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}
OPEN_PATHS = ("/health/", "/v2/health/")
"""Answered without a token even when endpoint auth is on (probes)."""


def build_openapi(dataplane: DataPlane, routes: Sequence[BaseRoute] = (),
                  *, is_auth_required: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``/predict``'s request schema comes from the signature.
    Every other route in ``routes`` (the protocols', monitoring's) is listed too, and with
    ``is_auth_required`` every operation but the probes needs a bearer token."""
    document = _model_operations(dataplane)
    paths: dict[str, Any] = document["paths"]
    components = document["components"]["schemas"]
    components["V2InferRequest"] = V2_INFER_REQUEST_SCHEMA
    for route in routes:
        if not isinstance(route, Route) or route.path in ("/openapi.json", "/docs"):
            continue
        doc = route_doc(route.endpoint)
        if doc is not None:  # a plug-in's route (monitoring's /feedback) brings its schema
            components[doc.body_name] = dict(doc.body_schema)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path, {}).setdefault(method.lower(),
                                                        _generic_operation(route, method))
    if is_auth_required:
        document["components"]["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "A token holding 'invoke' on this model."}}
        document["security"] = [{"bearerAuth": []}]
        for path, operations in paths.items():
            if path.startswith(OPEN_PATHS):
                for operation in operations.values():
                    operation["security"] = []
    return document


def _generic_operation(route: Route, method: str) -> dict[str, Any]:
    summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
    operation: dict[str, Any] = {
        "summary": summary.strip("` "),
        "parameters": [{"name": name, "in": "path", "required": True, "schema": {
            "type": "string", "minLength": 1}} for name in route.param_convertors],
        "responses": {"200": {"description": "Done.", "content": {JSON: {"schema": {
            "type": "object"}}}}, "4XX": {"description": "The request was refused.",
                                         "content": {JSON: {"schema": {"$ref": f"{REF}Error"}}}}},
    }
    doc = route_doc(route.endpoint)
    body = doc.body_name if doc is not None else None
    if route.path.endswith("/infer"):
        body = "V2InferRequest"
    if method == "POST":
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": {
            "$ref": f"{REF}{body}"} if body else {"type": "object"}}}}
    if doc is not None and doc.success_status != 200:
        operation["responses"][str(doc.success_status)] = operation["responses"].pop("200")
    return operation


def _model_operations(dataplane: DataPlane) -> dict[str, Any]:
    """The operations whose schemas come from the model: predict, invocations, explain."""
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
    context = serving(request)
    settings = context.settings
    return json_response(build_openapi(context.dataplane, request.app.routes,
                                       is_auth_required=settings.is_endpoint_auth_required))


async def docs(request: Request) -> Response:
    """``GET /docs``: Swagger UI 5 (reads OpenAPI 3.1) from the locally mounted swagger_ui_bundle.

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
