"""A shadow's share of mirrored requests, where the proxy copies every request.

ingress-nginx's ``mirror-target`` copies every request of an Ingress to the shadow version
and discards its answers; it has no percentage. A serving process started with
``serving.mirror_percent`` (the generated manifests set it on a shadow version's pods) calls
the model for that share of prediction requests, drawn at random, and answers the others 204
at once, without reading their body, logging or counting them as predictions (they are
counted in ``greenbutton_mirror_copies_skipped_total``). Health probes, scrapes and every
other route are untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import Metrics


class MirrorSample:
    """Passes ``percent`` % of requests to the ``predictions`` routes (path templates, as
    the app declares them) on; answers the rest 204."""

    def __init__(self, app: ASGIApp, *, percent: float, predictions: Iterable[str],
                 metrics: Metrics, labels: Callable[[], tuple[str, str]],
                 draw: Callable[[], float] = random.random) -> None:
        self.app, self.share, self.draw = app, percent / 100, draw
        self.metrics, self.labels = metrics, labels
        self.routes = [compile_path(template)[0] for template in predictions]

    def _is_prediction(self, path: str) -> bool:
        return any(route.match(path) for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not self._is_prediction(scope["path"]) or self.draw() < self.share):
            await self.app(scope, receive, send)
            return
        self.metrics.mirror_copies_skipped.labels(*self.labels()).inc()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
