"""The sliding drift window: the last N rows served, tested every few seconds off the hot path.

A :class:`~greenbutton.serving.hooks.PredictionSink`: ``submit`` only appends to a deque; a
background task tests the window in a worker thread, publishes the gauges, keeps a JSON
snapshot for ``GET /monitoring`` and hands the figures to the alerter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .alerts import Alerter, Figures
from .drift import DriftResult, Window
from .gauges import MonitoringGauges
from .monitors import Monitors
from .payload_store import PayloadStore
from .stacking import Answered, stack_inputs

if TYPE_CHECKING:
    from ..serving.hooks import PredictionRecord

logger = logging.getLogger(__name__)
MIN_ROWS = 20
"""Fewer rows than this are not tested (too little power to be worth a gauge)."""


class DriftWindow:
    """Keeps the last ``size`` rows and tests them every ``interval_s`` seconds."""

    def __init__(self, monitors: Monitors, gauges: MonitoringGauges, *, model: str,
                 version: str | None, size: int, interval_s: float, alpha: float,
                 store: PayloadStore | None = None, alerter: Alerter | None = None,
                 error_rate: Callable[[], float | None] = lambda: None) -> None:
        self.monitors, self.gauges, self.model, self.version = monitors, gauges, model, version
        self.size, self.interval_s, self.alpha = size, interval_s, alpha
        self.store, self.alerter, self.error_rate = store, alerter, error_rate
        self._records: deque[Answered] = deque()
        self._rows = 0
        self._new_rows = 0
        self._task: asyncio.Task[None] | None = None
        self.snapshot: dict[str, Any] = {"model": {"name": model, "version": version},
                                         "window": {"rows": 0, "size": size}, "drift": None}

    def submit(self, record: PredictionRecord) -> None:
        """Add the record's rows; the oldest rows leave once there are more than ``size``."""
        self.add(Answered.of(record))  # the request's DataFrame is not kept (see Answered)

    def add(self, entry: Answered) -> None:
        """:meth:`submit` for a record already made an :class:`Answered` entry."""
        self._records.append(entry)
        self._rows += entry.rows
        self._new_rows += entry.rows
        while self._records and self._rows - self._records[0].rows >= self.size:
            self._rows -= self._records.popleft().rows
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._test_forever())

    async def aclose(self) -> None:
        """Stop testing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _test_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.test_now()
            except Exception:
                logger.exception("drift test failed")

    async def test_now(self) -> dict[str, Any]:
        """Test the current window now (when it has enough new rows); the snapshot."""
        if self._new_rows == 0 or self._rows < min(MIN_ROWS, self.size):
            return self.snapshot
        self._new_rows = 0
        records = list(self._records)
        window, latencies = await asyncio.to_thread(self._window, records)
        results = await asyncio.to_thread(self._test, window)
        self.gauges.publish_drift(self.model, self.version, results, len(window.frame))
        flags = window.outlier_scores > getattr(self.monitors.outliers, "threshold", np.inf)
        figures = await asyncio.to_thread(self._figures, results, flags, latencies)
        self.snapshot = {
            "model": {"name": self.model, "version": self.version},
            "window": {"rows": len(window.frame), "size": self.size, "alpha": self.alpha},
            "drift": {name: result.to_json() for name, result in results.items()},
            "outlier_rate": figures.outlier_rate, "accuracy": figures.accuracy,
            "mean_reward": figures.mean_reward, "error_rate": figures.error_rate,
            "p99_latency_s": figures.p99_latency_s,
        }
        if self.alerter is not None:
            self.snapshot["alerts_sent"] = await self.alerter.check(figures)
        return self.snapshot

    def _window(self, records: list[Answered]) -> tuple[Window, list[float]]:
        frame = stack_inputs(records).tail(self.size)
        outputs = np.concatenate([np.asarray(r.predictions).reshape(r.rows, -1)
                                  for r in records])[-self.size:]
        scores = [_score(a) for r in records for a in r.annotations.get("outliers", [])]
        if len(scores) >= len(frame) and None not in scores:
            outlier_scores = np.asarray(scores[-len(frame):], dtype=float)
        else:
            outlier_scores = self.monitors.outlier_scores(frame)
        window = Window(frame.reset_index(drop=True), outputs, outlier_scores)
        return window, [r.latency_s for r in records]

    def _test(self, window: Window) -> dict[str, DriftResult]:
        results = self.monitors.test(window, self.alpha)
        labels = self.monitors.drift.get("predictions")
        if self.store is not None and labels is not None:
            truths = self.store.recent_truths(self.model, self.version, self.size)
            flat = np.asarray([t for truth in truths for t in np.ravel(truth)], dtype=object)
            if flat.size >= MIN_ROWS:
                results["labels"] = labels.test(Window(window.frame, flat), self.alpha)
        return results

    def _figures(self, results: dict[str, DriftResult], flags: np.ndarray,
                 latencies: list[float]) -> Figures:
        summary = None
        if self.store is not None:
            summary = next((s for s in self.store.summaries() if s.model_name == self.model
                            and s.model_version == self.version), None)
        return Figures(
            model=self.model, version=self.version, is_drift=results["overall"].is_drift,
            outlier_rate=float(flags.mean()) if flags.size else None,
            accuracy=summary.accuracy if summary else None,
            mean_reward=summary.mean_reward if summary else None,
            error_rate=self.error_rate(),
            p99_latency_s=float(np.quantile(latencies, 0.99)) if latencies else None)


def _score(annotation: Any) -> float | None:
    if isinstance(annotation, dict) and isinstance(annotation.get("score"), int | float):
        return float(annotation["score"])
    return None
