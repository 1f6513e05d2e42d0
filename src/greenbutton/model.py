"""The model contract: subclass :class:`Model`, implement ``predict``.

This module is serialised *by value* into every logged model (see ``packaging.py``), so a
logged model loads with plain MLflow in a process where greenbutton is not installed. Keep
it self-contained: standard library and MLflow only, nothing else from greenbutton.
Runtimes recognise the hooks by attribute (``explain``, ``reward``, endpoint markers),
never by ``isinstance``, for that reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from mlflow.pyfunc.model import PythonModel

ENDPOINT_MARKER = "__greenbutton_endpoint__"
RESERVED_PATHS = (
    "predict", "invocations", "explain", "feedback", "metrics", "health", "v2", "docs",
    "openapi.json", "monitoring", "ping", "version",
)
_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class EndpointSpec:
    """An extra HTTP endpoint exposed by a model method."""

    path: str
    methods: tuple[str, ...]
    attribute: str = ""


class Model(PythonModel):
    """Base class for a greenbutton model; a regular MLflow pyfunc ``PythonModel``.

    Implement ``predict(self, context, model_input, params=None)``. Optionally implement
    ``load_context(self, context)``, ``explain(self, context, model_input, params=None)``,
    ``reward(self, prediction, truth) -> float`` and extra endpoints marked with
    :func:`endpoint`. Declare ``max_batch_size`` above 1 when ``predict`` takes batches.
    """

    _skip_type_hint_validation: ClassVar[bool] = True
    """greenbutton validates requests against the logged signature itself."""

    max_batch_size: ClassVar[int] = 1
    """Largest batch the runtime may form from concurrent requests (1: no batching)."""
    max_batch_wait_ms: ClassVar[float] = 2.0
    """Longest a request waits for others to join its batch."""
    explain_estimator: ClassVar[str | None] = None
    """Attribute holding the scikit-learn estimator the default ``/explain`` explains
    (None: the one fitted estimator found among the instance's attributes)."""
    explain_output_schema: ClassVar[dict[str, Any] | None] = None
    """JSON Schema of what your own ``explain`` returns, shown in the OpenAPI document."""

    @classmethod
    def endpoints(cls) -> list[EndpointSpec]:
        """Extra endpoints declared on this class with :func:`endpoint`."""
        found: list[EndpointSpec] = []
        for attribute in sorted(dir(cls)):
            spec = getattr(getattr(cls, attribute, None), ENDPOINT_MARKER, None)
            if isinstance(spec, EndpointSpec):
                found.append(EndpointSpec(spec.path, spec.methods, attribute))
        return found


def endpoint(path: str | None = None, *, methods: tuple[str, ...] = ("POST",)) -> Callable[[F], F]:
    """Mark a model method as an extra endpoint served at ``/<path>`` (default: its name)."""

    def mark(function: F) -> F:
        spec = EndpointSpec(path or function.__name__, tuple(m.upper() for m in methods))
        setattr(function, ENDPOINT_MARKER, spec)
        return function

    return mark


MODEL_TEST_MARKER = "__greenbutton_model_test__"


def model_test(function: F) -> F:
    """Mark a method ``(self, context) -> None`` as a model unit test, run as a promotion gate
    on the logged model; it fails by raising (e.g. ``assert``) or returning ``False``."""
    setattr(function, MODEL_TEST_MARKER, True)
    return function
