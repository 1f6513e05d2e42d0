"""The control plane's OpenAPI 3.1 document, built from its route table.

Each handler says what the document cannot read off the route with :func:`documented`: its
JSON body (a pydantic model), success statuses, query parameters, and whether it is open
(``/api/v1/health``); everything else needs a bearer token (``securitySchemes``). Served at
``GET /openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..dataplane.responses import ERROR_SCHEMA, json_response
from ..store.schema import MAX_ID

REF = "#/components/schemas/"
ERRORS = {400: "Malformed body", 401: "No live bearer token", 403: "Not allowed",
          404: "Not found", 409: "Conflict (a lost race names the winner)",
          413: "Body too large", 415: "Not JSON", 422: "Invalid input (the field is named)",
          503: "Not ready (retry)"}
Handler = TypeVar("Handler", bound=Callable[..., Any])
_PARAM = re.compile(r"{([^}:]+)(?::([a-z]+))?}")


@dataclass(frozen=True)
class Query:
    """One query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class OperationDoc:
    """What :func:`documented` attaches to a handler."""

    body: type[BaseModel] | None = None
    ok: tuple[int, ...] = (200,)
    query: tuple[Query, ...] = ()
    is_open: bool = False


def documented(*, body: type[BaseModel] | None = None, ok: tuple[int, ...] = (200,),
               query: tuple[Query, ...] = (), is_open: bool = False) -> Callable[[Handler],
                                                                                 Handler]:
    """Describe a handler for the OpenAPI document."""
    def mark(handler: Handler) -> Handler:
        handler.__openapi__ = OperationDoc(body, ok, query, is_open)  # type: ignore[attr-defined]
        return handler

    return mark


def build_openapi(routes: Sequence[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    """The document for every ``/api/v1`` route in ``routes``."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description":
                 "greenbutton's control plane: models and their lifecycle, governance, "
                 "deployments. Stable endpoint URLs are /endpoints/{deployment}/… (each "
                 "deployment's own document: /endpoints/{deployment}/openapi.json)."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "An API token (greenbutton token create)."}}},
        "security": [{"bearerAuth": []}],
    }


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    doc: OperationDoc = getattr(route.endpoint, "__openapi__", OperationDoc())
    summary, _, description = (route.endpoint.__doc__ or route.name).strip().partition("\n")
    operation: dict[str, Any] = {
        "operationId": route.name, "summary": summary.strip(),
        "description": " ".join(description.split()),
        "parameters": [_path_parameter(name, kind) for name, kind in
                       _PARAM.findall(route.path)] + [
            {"name": q.name, "in": "query", "required": False, "schema": q.schema,
             "description": q.description} for q in doc.query],
        "responses": {
            **{str(status): {"description": "Done", "content": {
                "application/json": {"schema": {"type": "object"}}}} for status in doc.ok},
            **{str(status): {"description": text, "content": {
                "application/json": {"schema": {"$ref": f"{REF}Error"}}}}
               for status, text in ERRORS.items() if not doc.is_open or status == 503},
        },
    }
    if doc.is_open:
        operation["security"] = []
    if doc.body is not None:
        schema = doc.body.model_json_schema(ref_template=REF + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[doc.body.__name__] = schema
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"{REF}{doc.body.__name__}"}}}}
    return operation


def _path_parameter(name: str, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if kind == "int":
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    elif name == "decision":
        schema = {"type": "string", "enum": ["approve", "reject", "override"]}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def openapi_route(routes: Callable[[], Sequence[BaseRoute]], version: str) -> Route:
    """``GET /openapi.json`` for the routes ``routes()`` lists (open: it holds no data)."""
    document: dict[str, Any] = {}

    async def openapi_json(request: Request) -> Response:
        if not document:
            document.update(build_openapi(routes(), title="greenbutton control plane",
                                          version=version))
        return json_response(document)

    return Route("/openapi.json", openapi_json, methods=["GET"])
