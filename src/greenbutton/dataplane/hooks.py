"""The monitoring seam: what the data plane calls on every prediction, and what wiring plugs in.

Two kinds of hook, both structural (any class with these members fits, no import needed):

- a :class:`RowAnnotator` runs on the request path after ``predict`` and returns one
  JSON-able value per row; ``/predict`` renders its list under the annotator's ``name``;
- a :class:`PredictionSink` receives a :class:`PredictionRecord` after every answered
  prediction; ``submit`` must never block (the sink owns a bounded buffer) and ``aclose``
  flushes it on graceful shutdown.

Wiring supplies them through :class:`ServingPlugins`, built once per worker after the model
has loaded (annotators usually need artifacts logged with the model)::

    def plugins(model: ServedModel, metrics: Metrics) -> ServingHooks:
        return ServingHooks(annotators=[OutlierAnnotator(...)], sinks=[PayloadLog(...)])

    build_serving_app(settings, uri, plugins=ServingPlugins(routes=[...], hooks=plugins))
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np
import pandas as pd
from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from .loading import ServedModel
    from .metrics import Metrics


class RowAnnotator(Protocol):
    """Adds one JSON-able value per row to each prediction (e.g. outlier flags).

    Example::

        class Outliers:
            name = "outliers"
            def annotate(self, frame, predictions):
                return [{"is_outlier": bool(s > 10), "score": float(s)} for s in score(frame)]

    An annotator may also define ``annotate_with_values(frame, values, predictions)``: the
    data plane calls it instead when it has the request's rows as one numeric array
    (``values``, in ``frame``'s column order), so the annotator need not convert the frame.
    """

    name: str

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        """One value per row of ``frame``; runs in a worker thread, after ``predict``."""
        ...


class PredictionRecord(NamedTuple):
    """One answered prediction, as sinks receive it.

    A named tuple rather than a frozen dataclass: one is made per request, and a frozen
    dataclass sets its ten fields one ``object.__setattr__`` at a time (3 µs against 1 µs).
    """

    request_id: str
    model_name: str
    model_version: str | None
    endpoint: str
    inputs: pd.DataFrame
    predictions: Any
    annotations: dict[str, list[Any]]
    latency_s: float
    received_at: datetime.datetime
    """UTC time the data plane received the request."""
    values: np.ndarray | None = None
    """``inputs``' rows as one numeric array, as the request carried them, when the data plane
    built the frame from one (a sink can keep it instead of converting the frame); else None."""


class PredictionSink(Protocol):
    """Receives every answered prediction (the payload log; drift and feedback read what it logs).

    Example::

        class Recent:
            def __init__(self): self.records = collections.deque(maxlen=1000)
            def submit(self, record): self.records.append(record)
            async def aclose(self): pass
    """

    def submit(self, record: PredictionRecord) -> None:
        """Take ``record`` without blocking (drop and count when the buffer is full)."""
        ...

    async def aclose(self) -> None:
        """Flush buffered records; called once on graceful shutdown."""
        ...


@dataclass(frozen=True)
class ServingHooks:
    """The annotators and sinks of one worker."""

    annotators: Sequence[RowAnnotator] = ()
    sinks: Sequence[PredictionSink] = ()


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says of a plug-in route beyond its path and docstring: the
    request body's schema (under ``body_name`` in the components) and the success status."""

    body_name: str
    body_schema: Mapping[str, Any]
    success_status: int = 200


ROUTE_DOC = "route_doc"
"""The attribute of an endpoint function that holds its :class:`RouteDoc`."""

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def document(endpoint: _Endpoint, doc: RouteDoc) -> _Endpoint:
    """``endpoint``, carrying ``doc`` for :func:`route_doc` (the serving OpenAPI document)."""
    setattr(endpoint, ROUTE_DOC, doc)
    return endpoint


def route_doc(endpoint: Any) -> RouteDoc | None:
    """The :class:`RouteDoc` a plug-in attached to ``endpoint``, if any."""
    doc = getattr(endpoint, ROUTE_DOC, None)
    return doc if isinstance(doc, RouteDoc) else None


HooksFactory = Callable[["ServedModel", "Metrics"], ServingHooks]
"""Builds a worker's hooks from its loaded model and its metrics (called once per worker)."""


@dataclass(frozen=True)
class ServingPlugins:
    """What wiring adds to a serving process: routes at build time, hooks after load."""

    routes: Sequence[BaseRoute] = ()
    hooks: HooksFactory | None = None


def utc_now() -> datetime.datetime:
    """The current time in UTC (``received_at`` of a record)."""
    return datetime.datetime.now(datetime.UTC)
