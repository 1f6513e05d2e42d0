"""Prometheus metrics of one serving process, kept in a registry the process owns."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets for request and inference latency, in seconds."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Histogram buckets for requests and rows per batched model call."""
LIMITS = ("body_size", "rows", "timeout", "concurrency")
"""Request limits counted in ``limit_rejections`` (one label value each)."""


class Metrics:
    """The serving metrics, registered on a fresh ``CollectorRegistry`` per instance."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, namespace: str = "greenbutton") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.expositions: list[Callable[[], bytes]] = []
        """More series, already in text format, that :meth:`render` appends (families not in
        :attr:`registry`; the drift series, which change every few seconds, render cached)."""
        model = ("model", "version")
        self.requests = Counter(
            "requests",
            "HTTP requests answered, by endpoint and status code.",
            [*model, "endpoint", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "request_latency_seconds",
            "Time from request received to response sent.",
            [*model, "endpoint"],
            namespace=namespace,
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.errors = Counter(
            "errors",
            "Requests answered with an error, by error type.",
            [*model, "endpoint", "type"],
            namespace=namespace,
            registry=self.registry,
        )
        self.prediction_rows = Counter(
            "prediction_rows",
            "Rows scored by the model.",
            list(model),
            namespace=namespace,
            registry=self.registry,
        )
        self.inference_latency = Histogram(
            "inference_latency_seconds",
            "Time spent inside the model's predict call.",
            list(model),
            namespace=namespace,
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.model_ready = Gauge(
            "model_ready",
            "1 when the model is loaded and warmed up, else 0.",
            list(model),
            namespace=namespace,
            registry=self.registry,
        )

        self.batch_requests = Histogram(
            "batch_requests",
            "Requests combined into one batched model call.",
            list(model),
            namespace=namespace,
            registry=self.registry,
            buckets=BATCH_BUCKETS,
        )
        self.batch_rows = Histogram(
            "batch_rows",
            "Rows in one batched model call.",
            list(model),
            namespace=namespace,
            registry=self.registry,
            buckets=BATCH_BUCKETS,
        )
        self.limit_rejections = Counter(
            "limit_rejections",
            "Requests refused by a limit: body_size, rows, timeout, concurrency.",
            ["limit"],
            namespace=namespace,
            registry=self.registry,
        )
        for limit in LIMITS:
            self.limit_rejections.labels(limit)
        self.mirror_copies_skipped = Counter(
            "mirror_copies_skipped",
            "Mirrored requests answered 204 without calling the model (serving.mirror_percent).",
            list(model),
            namespace=namespace,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "requests_in_flight",
            "Prediction requests being answered by this worker.",
            namespace=namespace,
            registry=self.registry,
        )

    def observe_request(
        self,
        *,
        model: str,
        version: str | None,
        endpoint: str,
        status: int,
        latency_s: float,
        error_type: str | None = None,
    ) -> None:
        """Count one answered request, its latency and, if it failed, its error type."""
        labels = (model, version or "", endpoint)
        self.requests.labels(*labels, str(status)).inc()
        self.request_latency.labels(*labels).observe(latency_s)
        if error_type is not None:
            self.errors.labels(*labels, error_type).inc()

    def observe_prediction(
        self, *, model: str, version: str | None, rows: int, latency_s: float
    ) -> None:
        """Count the rows of one model call and how long the call took."""
        self.prediction_rows.labels(model, version or "").inc(rows)
        self.inference_latency.labels(model, version or "").observe(latency_s)

    def observe_batch(self, *, model: str, version: str | None, requests: int, rows: int) -> None:
        """Record the size of one batched model call."""
        self.batch_requests.labels(model, version or "").observe(requests)
        self.batch_rows.labels(model, version or "").observe(rows)

    def observe_limit(self, limit: str) -> None:
        """Count one request refused by ``limit`` (one of ``LIMITS``)."""
        self.limit_rejections.labels(limit).inc()

    def set_ready(self, *, model: str, version: str | None, is_ready: bool) -> None:
        """Publish whether the model can answer."""
        self.model_ready.labels(model, version or "").set(1 if is_ready else 0)

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format (for ``GET /metrics``), followed
        by every :attr:`expositions` text."""
        own = generate_latest(self.registry)
        if not self.expositions:
            return own
        return own + b"".join(render() for render in self.expositions)
