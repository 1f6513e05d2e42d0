"""JSON responses and the one error body: ``{"error": {type, message, field, request_id}}``."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import GreenbuttonError, http_status_for
from .encoding import JSON, render_json

RETRY_AFTER_S = 1
"""Seconds a client is asked to wait after a 503."""


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response rendered with orjson."""
    return Response(render_json(content), status_code=status_code, headers=headers, media_type=JSON)


def error_response(
    status_code: int, error_type: str, message: str, *, field: str | None, request_id: str | None,
    retry_after_s: int = RETRY_AFTER_S,
) -> Response:
    """The error body every endpoint (serving, control plane, gateway) answers with; a 503
    carries ``Retry-After``."""
    body = {"type": error_type, "message": message, "field": field, "request_id": request_id}
    headers = {"Retry-After": str(retry_after_s)} if status_code == 503 else None
    return json_response({"error": body}, status_code, headers)


async def handle_greenbutton_error(request: Request, error: Exception) -> Response:
    """Starlette exception handler: a GreenbuttonError becomes its status from errors.py."""
    assert isinstance(error, GreenbuttonError)
    request.state.error_type = error.type
    request.state.error_field = error.field
    return error_response(
        http_status_for(error),
        error.type,
        error.message,
        field=error.field,
        request_id=getattr(request.state, "request_id", None),
    )


async def handle_http_exception(request: Request, error: Exception) -> Response:
    """Starlette exception handler: routing errors (404, 405) in the same body shape."""
    assert isinstance(error, HTTPException)
    error_type = error.detail.lower().replace(" ", "_")
    request.state.error_type = error_type
    response = error_response(
        error.status_code,
        error_type,
        error.detail,
        field=None,
        request_id=getattr(request.state, "request_id", None),
    )
    response.headers.update(error.headers or {})
    return response


def internal_error_response(request_id: str) -> Response:
    """The 500 answer to an unexpected exception; the details go to the log, not the client."""
    return error_response(
        500,
        "internal_error",
        "internal server error; see the server log",
        field=None,
        request_id=request_id,
    )


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
"""The JSON schema of every error body (:func:`error_response`), for OpenAPI documents."""
