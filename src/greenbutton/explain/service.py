"""Explanations on a budget: their own concurrency limit, timeout, thread pool and metrics.

Explaining costs far more than predicting, so it never borrows the prediction path's
threads: at most ``max_concurrency`` explanations run at once, each in this service's own
pool. A call over the limit is refused at once (503, ``Overloaded``); one over
``timeout_s`` answers 504 (``RequestTimeout``). A worker thread cannot be interrupted, so a
timed-out explanation keeps its slot until its thread really ends: timeouts never let more
than ``max_concurrency`` explanations pile up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..calls import ModelCalls
from ..config import ExplainSettings
from ..errors import Overloaded, PayloadTooLarge, RequestTimeout
from .explanation import Explained, ExplainedModel

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServedLike(Protocol):
    """What the service needs of a served model (``serving.loading.ServedModel`` has it)."""

    @property
    def pyfunc(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...


class ExplainMetrics:
    """Explain latency, refusals and work in flight, registered on the serving registry."""

    def __init__(self, registry: CollectorRegistry, namespace: str = "greenbutton") -> None:
        model = ["model", "version"]
        self.latency = Histogram(
            "explain_latency_seconds",
            "Time spent computing explanations, by explainer.",
            [*model, "explainer"],
            namespace=namespace,
            registry=registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.rejected = Counter(
            "explain_rejected",
            "Explain requests refused: overloaded (503) or timeout (504).",
            [*model, "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.in_flight = Gauge(
            "explain_in_flight",
            "Explanations running now, including timed-out ones still finishing.",
            namespace=namespace,
            registry=registry,
        )


class ExplainService:
    """Explains rows with the served model, within the :class:`ExplainSettings` limits."""

    def __init__(self, settings: ExplainSettings, metrics: ExplainMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._in_flight = 0
        self._pool: ThreadPoolExecutor | None = None
        self._cached: tuple[Any, ExplainedModel] | None = None
        self._build_lock = threading.Lock()
        self.calls = ModelCalls()
        """The explanations running now (watched by the serving process's watchdog)."""

    @property
    def is_full(self) -> bool:
        """True while ``max_concurrency`` explanations are running."""
        return self._in_flight >= self.settings.max_concurrency

    def admit(self, model: ServedLike, frame: pd.DataFrame) -> None:
        """Refuse now what :meth:`explain` would refuse: too many rows (413), no slot (503)."""
        if len(frame) > self.settings.max_rows:
            raise PayloadTooLarge(
                f"inputs: {len(frame)} rows, at most {self.settings.max_rows} explained at once",
                field="inputs",
            )
        if self.is_full:
            self.metrics.rejected.labels(model.name, model.version or "", "overloaded").inc()
            raise Overloaded(
                f"{self.settings.max_concurrency} explanations are running; retry later"
            )

    async def explain(
        self, model: ServedLike, frame: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> Explained:
        """Explain ``frame`` with ``model`` in this service's pool, within ``timeout_s``."""
        self.admit(model, frame)
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        work = asyncio.get_running_loop().run_in_executor(
            self._executor(), self._explain_blocking, model, frame, params
        )
        work.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(work), self.settings.timeout_s)
        except TimeoutError:
            self.metrics.rejected.labels(model.name, model.version or "", "timeout").inc()
            raise RequestTimeout(
                f"explanation took longer than {self.settings.timeout_s} s"
            ) from None

    def explained_model(self, model: ServedLike) -> ExplainedModel:
        """The explainable wrapper of ``model``, built once per loaded model."""
        with self._build_lock:
            if self._cached is None or self._cached[0] is not model.pyfunc:
                explained = ExplainedModel(
                    model.pyfunc,
                    background_rows=self.settings.background_rows,
                    max_evals=self.settings.max_evals,
                )
                self._cached = (model.pyfunc, explained)
            return self._cached[1]

    def warm_up(self, model: ServedLike) -> None:
        """Build the explainer and explain one reference row (blocking; call off the loop).

        The first explanation pays for SHAP's JIT compilation (seconds for the permutation
        explainer); a serving process calls this after loading so no caller does.
        """
        explained = self.explained_model(model)
        if not explained.has_own_explain:
            explained.explain(explained.background().head(1))

    def close(self) -> None:
        """Stop the pool without blocking: queued work is dropped, running work ends alone."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.settings.max_concurrency, thread_name_prefix="greenbutton-explain"
            )
        return self._pool

    def _explain_blocking(
        self, model: ServedLike, frame: pd.DataFrame, params: dict[str, Any] | None
    ) -> Explained:
        explained = self.explained_model(model)
        started = time.perf_counter()
        token = self.calls.begin()
        try:
            result = explained.explain(frame, params)
        finally:
            self.calls.end(token)
        self.metrics.latency.labels(model.name, model.version or "", result.explainer).observe(
            time.perf_counter() - started
        )
        return result

    def _release(self, work: asyncio.Future[Explained]) -> None:
        self._in_flight -= 1
        self.metrics.in_flight.set(self._in_flight)
        if not work.cancelled():
            work.exception()  # retrieved, so a timed-out failure is not logged as unhandled
