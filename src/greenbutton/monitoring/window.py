"""The sliding drift window: a model version's last N logged rows, tested every few seconds.

The window is read from the payload store (``PayloadStore.recent_predictions``), so it holds
what every worker and replica serving the version logged, not only this worker's share:
the workers of one server test the same rows and agree, a replaced worker starts with a full
window, and nothing is done per request. Every ``interval_s`` a background task reads the
newest rows (skipped when none are new), tests them in a worker thread, publishes the
gauges, keeps a JSON snapshot for ``GET /monitoring`` and hands the figures to the alerter.
Rows reach the store when the payload log flushes (every ``flush_interval_s``);
``test_now(refresh=True)`` flushes this worker's log first.

Every worker and replica serving the version reads the same rows, so one of them tests them
per interval: each interval, a worker first publishes the snapshot last stored by whichever
process tested, then claims the next test in the store (``claim_drift_test``); the one that
wins tests and stores its snapshot. A digits window costs about 100 ms of CPU in a tight
loop, more in a loaded server, holding the interpreter lock for much of it: once per
interval per version, not once per worker and replica. A worker whose claim fails (the
store down) tests anyway, and none waits for another's test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..logs import FailureStreaks
from .alerts import Alerter, Figures
from .drift import DriftResult, Window
from .gauges import MonitoringGauges
from .monitors import Monitors
from .payload_store import PayloadStore, RecentPrediction
from .performance import summary

logger = logging.getLogger(__name__)
MIN_ROWS = 20
"""Fewer rows than this are not tested (too little power to be worth a gauge)."""
Probabilities = Callable[[pd.DataFrame], Any]
"""The model's class probabilities for rows (one row of probabilities per input row)."""
CLAIM_SHARE = 0.9
"""A test may be claimed once this share of the interval has passed since the last claim:
a worker ticking every interval wins its own next turn despite the drift of its sleeps."""


class DriftWindow:
    """Tests the last ``size`` logged rows of a model version every ``interval_s`` seconds.

    ``flush``: writes this worker's buffered payload records (see ``test_now``).
    """

    def __init__(self, monitors: Monitors, gauges: MonitoringGauges, *, model: str,
                 version: str | None, size: int, interval_s: float, alpha: float,
                 store: PayloadStore, alerter: Alerter | None = None,
                 error_rate: Callable[[], float | None] = lambda: None,
                 flush: Callable[[], Awaitable[None]] | None = None,
                 feedback_rows: int = 200,
                 probabilities: Probabilities | None = None) -> None:
        self.monitors, self.gauges, self.model, self.version = monitors, gauges, model, version
        self.size, self.interval_s, self.alpha = size, interval_s, alpha
        self.store, self.alerter, self.error_rate, self.flush = store, alerter, error_rate, flush
        self.feedback_rows, self.probabilities = feedback_rows, probabilities
        self._newest: int | None = None
        """The newest row id of the last window tested."""
        self._task: asyncio.Task[None] | None = None
        self._streaks = FailureStreaks(logger)  # a full store fails every interval
        self.snapshot: dict[str, Any] = {"model": {"name": model, "version": version},
                                         "window": {"rows": 0, "size": size}, "drift": None}

    def start(self) -> None:
        """Start testing every ``interval_s`` (on the running event loop)."""
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
                await self.tick()
                self._streaks.succeeded("the drift test")
            except Exception:
                self._streaks.failed("the drift test")

    async def tick(self) -> dict[str, Any]:
        """One interval: publish the latest stored test, then test if this process wins the
        claim on the next one; the snapshot."""
        await self.adopt()
        try:
            is_mine = await asyncio.to_thread(self.store.coordination.claim_drift_test, self.model,
                                              self.version, self.interval_s * CLAIM_SHARE)
            self._streaks.succeeded("claiming the drift test")
        except Exception:
            self._streaks.failed("claiming the drift test", "; testing anyway")
            is_mine = True
        return await self.test_now() if is_mine else self.snapshot

    async def adopt(self) -> None:
        """Publish the version's stored snapshot if it tested rows newer than this worker's."""
        stored = await asyncio.to_thread(self.store.coordination.drift_snapshot, self.model,
                                         self.version)
        if stored is None or (self._newest is not None and stored[0] <= self._newest):
            return
        newest, snapshot = stored
        drift = snapshot.get("drift")
        if drift:
            results = {name: DriftResult.from_json(name, body) for name, body in drift.items()}
            self.gauges.publish_drift(self.model, self.version, results,
                                      int(snapshot.get("window", {}).get("rows", 0)))
        if snapshot.get("performance"):
            self.gauges.publish_performance(self.model, self.version, snapshot["performance"])
        self._newest, self.snapshot = newest, snapshot

    async def test_now(self, *, refresh: bool = False) -> dict[str, Any]:
        """Test the window now, if it has new rows (and at least ``MIN_ROWS``); the snapshot.

        ``refresh``: first write this worker's buffered records, so rows it has just served
        are in the window.
        """
        if refresh and self.flush is not None:
            await self.flush()
        logged = await asyncio.to_thread(self.store.recent_predictions, self.model,
                                         self.version, self.size)
        if not logged or logged[-1].id == self._newest:
            return self.snapshot
        window, latencies = await asyncio.to_thread(self._window, logged)
        if len(window.frame) < min(MIN_ROWS, self.size):
            return self.snapshot
        self._newest = logged[-1].id
        results, performance = await asyncio.to_thread(self._test, window)
        self.gauges.publish_drift(self.model, self.version, results, len(window.frame))
        self.gauges.publish_performance(self.model, self.version, performance)
        flags = window.outlier_scores > getattr(self.monitors.outliers, "threshold", np.inf)
        figures = await asyncio.to_thread(self._figures, results, flags, latencies, performance)
        self.snapshot = {
            "model": {"name": self.model, "version": self.version},
            "window": {"rows": len(window.frame), "size": self.size, "alpha": self.alpha},
            "drift": {name: result.to_json() for name, result in results.items()},
            "outlier_rate": figures.outlier_rate, "accuracy": figures.accuracy,
            "mean_reward": figures.mean_reward, "error_rate": figures.error_rate,
            "p99_latency_s": figures.p99_latency_s, "performance": performance,
        }
        if self.alerter is not None:
            self.snapshot["alerts_sent"] = await self.alerter.check(figures)
        try:
            await asyncio.to_thread(self.store.coordination.save_drift_snapshot, self.model,
                                    self.version, self._newest, self.snapshot)
            self._streaks.succeeded("storing the drift test's snapshot")
        except Exception:  # the other workers keep publishing the last stored snapshot
            self._streaks.failed("storing the drift test's snapshot")
        return self.snapshot

    def _window(self, logged: list[RecentPrediction]) -> tuple[Window, list[float]]:
        frame = _stack([entry.inputs for entry in logged]).tail(self.size)
        outputs = np.concatenate([
            np.asarray(entry.predictions).reshape(len(entry.inputs["data"]), -1)
            for entry in logged])[-self.size:]
        scores = [_score(a) for entry in logged
                  for a in (entry.annotations or {}).get("outliers", [])]
        if len(scores) >= len(frame) and None not in scores:
            outlier_scores = np.asarray(scores[-len(frame):], dtype=float)
        else:
            outlier_scores = self.monitors.outlier_scores(frame)
        window = Window(frame.reset_index(drop=True), outputs, outlier_scores)
        return window, [entry.latency_s for entry in logged]

    def _test(self, window: Window) -> tuple[dict[str, DriftResult], dict[str, Any]]:
        """The drift tests, with the newest labelled rows and the model's class
        probabilities; and the performance figures (see :func:`.performance.summary`)."""
        recent = self.store.recent_feedback(self.model, self.version, self.feedback_rows)
        window = replace(window,
                         truths=np.asarray(recent.truths[:self.feedback_rows], dtype=object),
                         outcomes=np.asarray(recent.outcomes[:self.feedback_rows], dtype=float),
                         probabilities=self._probabilities(window.frame))
        results = self.monitors.test(window, self.alpha)
        return results, summary(self.monitors.performance, self.monitors.confidence, window,
                                results.get("performance"))

    def _probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's class probabilities for ``frame`` (empty when it gives none)."""
        if self.probabilities is None or self.monitors.confidence is None:
            return np.empty(0)
        try:
            return np.asarray(self.probabilities(frame), dtype=float)
        except Exception:  # the user's code: no estimate this time, the tests still run
            logger.exception("predict_proba failed on the drift window")
            return np.empty(0)

    def _figures(self, results: dict[str, DriftResult], flags: np.ndarray,
                 latencies: list[float], performance: dict[str, Any]) -> Figures:
        summary_ = next((s for s in self.store.summaries() if s.model_name == self.model
                         and s.model_version == self.version), None)
        recent = performance.get("recent")
        is_accuracy = performance.get("measure") == "accuracy"
        estimated = performance.get("estimated") or {}
        return Figures(
            model=self.model, version=self.version, is_drift=results["overall"].is_drift,
            is_quality_issue="quality" in results and results["quality"].is_drift,
            is_performance_drop="performance" in results and results["performance"].is_drift,
            outlier_rate=float(flags.mean()) if flags.size else None,
            accuracy=recent if is_accuracy and recent is not None else (
                summary_.accuracy if summary_ else None),
            estimated_accuracy=estimated.get("accuracy"),
            mean_reward=summary_.mean_reward if summary_ else None,
            error_rate=self.error_rate(),
            p99_latency_s=float(np.quantile(latencies, 0.99)) if latencies else None)


def _score(annotation: Any) -> float | None:
    if isinstance(annotation, dict) and isinstance(annotation.get("score"), int | float):
        return float(annotation["score"])
    return None


def _stack(inputs: list[dict[str, Any]]) -> pd.DataFrame:
    """Logged inputs (split orientation) as one frame; requests logged under other column
    names (another signature) are aligned by name."""
    frames: list[pd.DataFrame] = []
    rows: list[Any] = []
    columns = inputs[0]["columns"]
    for entry in inputs:
        if entry["columns"] != columns:
            frames.append(pd.DataFrame(rows, columns=columns))
            rows, columns = [], entry["columns"]
        rows.extend(entry["data"])
    frames.append(pd.DataFrame(rows, columns=columns))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
