"""``ServingContext``: what a serving process's handlers use, set once by ``create_app``.

Usage::

    app = create_app(settings, dataplane, explainer=service)   # dataplane/app.py
    ...
    async def handler(request: Request) -> Response:
        dataplane = serving(request).dataplane                 # typed, one place
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request

from ..config import Settings
from ..explain.service import ExplainService
from .core import DataPlane


@dataclass(frozen=True)
class ServingContext:
    """A serving process's parts."""

    settings: Settings
    dataplane: DataPlane
    explain: ExplainService | None = None
    """``POST /explain`` (None: the route answers that explanations are not served)."""
    render_metrics: Callable[[], bytes] | None = None
    """``GET /metrics`` summed over the process's workers (None: this worker's own)."""


def serving(request: Request) -> ServingContext:
    """The serving process answering ``request``."""
    return serving_of(request.app)


def serving_of(app: Starlette) -> ServingContext:
    """The parts ``app`` was created with (``create_app``)."""
    context: ServingContext = app.state.serving
    return context
