"""greenbutton's exceptions and the one table that maps them to HTTP status codes.

    GreenbuttonError
    ├── NotFound ─────────────── ModelNotFound, VersionNotFound, DeploymentNotFound
    ├── AlreadyExists ────────── VersionAlreadyExists
    ├── Conflict ─────────────── InvalidTransition, StaleState, PromotionBlocked
    ├── InvalidInput ─────────── MalformedRequest, SchemaMismatch, UnsupportedBackend,
    │                            NonConformingModel
    ├── PayloadTooLarge
    ├── UnsupportedMediaType
    ├── PermissionDenied
    ├── Unauthenticated
    ├── NotReady ─────────────── ModelNotReady, Overloaded, AuditLogBroken
    └── RequestTimeout

This module imports no web framework: HTTP adapters look the status up in ``HTTP_STATUS``
with :func:`http_status_for`, walking the exception's MRO as Starlette does.
"""

from __future__ import annotations

import re


class GreenbuttonError(Exception):
    """Root of every error greenbutton raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def type(self) -> str:
        """Snake-case name used as ``error.type`` in JSON bodies."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()


class NotFound(GreenbuttonError):
    """Something named in the request does not exist."""


class ModelNotFound(NotFound):
    """No registered model of that name."""


class VersionNotFound(NotFound):
    """The registered model has no such version."""


class DeploymentNotFound(NotFound):
    """No deployment of that name."""


class AlreadyExists(GreenbuttonError):
    """Creating something that is already there."""


class VersionAlreadyExists(AlreadyExists):
    """That model version is already registered."""


class Conflict(GreenbuttonError):
    """The request conflicts with the current state."""


class InvalidTransition(Conflict):
    """A lifecycle transition that the state machine does not allow."""


class StaleState(Conflict):
    """Someone else changed the record first (optimistic concurrency)."""


class PromotionBlocked(Conflict):
    """A gate failed for this version: approval needs an override (``manage`` + reason)."""


class InvalidInput(GreenbuttonError):
    """The input is malformed or does not match what is expected."""


class MalformedRequest(InvalidInput):
    """The body cannot be parsed at all (empty, not JSON, not UTF-8): HTTP 400."""


class SchemaMismatch(InvalidInput):
    """A request does not match the model signature."""


class UnsupportedBackend(InvalidInput):
    """A URI names a scheme greenbutton has no implementation for."""

    def __init__(self, scheme: str, *, known: list[str]) -> None:
        super().__init__(f"unsupported URI scheme {scheme!r}; known: {', '.join(known)}")
        self.scheme = scheme
        self.known = known


class NonConformingModel(InvalidInput):
    """The model class does not satisfy greenbutton's model contract."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("model does not conform: " + "; ".join(problems))
        self.problems = problems


class PayloadTooLarge(GreenbuttonError):
    """Body or row count above the configured limit."""


class UnsupportedMediaType(GreenbuttonError):
    """Content type not accepted (pickle, octet-stream, non-JSON writes)."""


class PermissionDenied(GreenbuttonError):
    """Authenticated, but not allowed."""


class Unauthenticated(GreenbuttonError):
    """No valid credentials."""


class NotReady(GreenbuttonError):
    """The component cannot answer yet (loading, draining, overloaded)."""


class ModelNotReady(NotReady):
    """The model is still loading or warming up."""


class Overloaded(NotReady):
    """Concurrency limit reached; retry later."""


class AuditLogBroken(NotReady):
    """The audit log fails its checks (altered, truncated, unsealed): nothing that relies on
    it changes until an operator has looked (``greenbutton audit verify``)."""


class RequestTimeout(GreenbuttonError):
    """The request took longer than its time budget."""


HTTP_STATUS: dict[type[GreenbuttonError], int] = {
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    InvalidInput: 422,
    MalformedRequest: 400,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    PermissionDenied: 403,
    Unauthenticated: 401,
    NotReady: 503,
    RequestTimeout: 504,
}


def http_status_for(error: BaseException) -> int:
    """The HTTP status for ``error``: the nearest class in its MRO found in the table, else 500."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500
