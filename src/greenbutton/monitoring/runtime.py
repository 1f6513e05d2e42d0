"""Everything monitoring adds to one serving process, built once the model has loaded.

    runtime = MonitoringRuntime(settings.monitoring, PayloadStore(uri), alerts)   # wiring
    plugins = ServingPlugins(routes=runtime.routes(), hooks=runtime.hooks)
    build_serving_app(settings, model_uri, plugins=plugins)

``hooks(model, metrics)`` loads the monitors logged with the model version and returns the
outlier annotator (and, when enabled, the adversarial one) and the sink (the payload log,
from which the drift window reads); ``/feedback`` and ``/monitoring`` answer 503 until then.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute, Route

from ..config import MonitoringSettings
from ..errors import ModelNotReady
from .adversarial import FeatureSqueezingDetector
from .alerts import Alerter, AlertsSpec
from .feedback import FeedbackService
from .gauges import MonitoringGauges
from .monitors import MONITORS_ARTIFACT, Monitors, load_monitors
from .payload_log import PayloadLog
from .payload_store import PayloadStore
from .retention import Retention
from .window import DriftWindow

if TYPE_CHECKING:
    from ..dataplane.hooks import PredictionRecord, ServingHooks
    from ..dataplane.loading import ServedModel
    from ..dataplane.metrics import Metrics

logger = logging.getLogger(__name__)


class OutlierAnnotator:
    """``"outliers": [{"is_outlier": bool, "score": float}, ...]`` on every prediction."""

    name = "outliers"

    def __init__(self, monitors: Monitors, gauges: MonitoringGauges, labels: tuple[str, str]):
        self.monitors, self.gauges, self.labels = monitors, gauges, labels
        self.threshold = float(getattr(monitors.outliers, "threshold", np.inf))

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        return self.annotate_with_values(frame, None, predictions)

    def annotate_with_values(self, frame: pd.DataFrame, values: np.ndarray | None,
                             predictions: Any) -> list[Any]:
        """:meth:`annotate`, reading ``values`` (the rows as one array) if given."""
        scores = self.monitors.outlier_scores(frame, values)
        if len(scores) == 1:  # most requests: Python scalars, no array per flag
            score = float(scores[0])
            is_outlier = score > self.threshold
            if is_outlier:
                self.gauges.outlier_rows.labels(*self.labels).inc()
            # numpy's rounding (round half to even of score·10⁴), as the array path below
            rounded = round(score * 1e4) / 1e4 if math.isfinite(score) else score
            return [{"is_outlier": is_outlier, "score": rounded}]
        flags = scores > self.threshold
        flagged = int(flags.sum())
        if flagged:
            self.gauges.outlier_rows.labels(*self.labels).inc(flagged)
        return [{"is_outlier": f, "score": s}
                for f, s in zip(flags.tolist(), scores.round(4).tolist(), strict=True)]


class AdversarialAnnotator:
    """``"adversarial": [{"is_adversarial": bool, "score": float}, ...]`` (feature squeezing)."""

    name = "adversarial"

    def __init__(self, detector: FeatureSqueezingDetector, gauges: MonitoringGauges,
                 labels: tuple[str, str]) -> None:
        self.detector, self.gauges, self.labels = detector, gauges, labels

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        values = self.detector.annotate(frame, predictions)
        flagged = sum(v["is_adversarial"] for v in values)
        if flagged:
            self.gauges.adversarial_rows.labels(*self.labels).inc(flagged)
        return values


def model_artifacts(model: ServedModel) -> dict[str, str]:
    """The artifacts (key → local path) logged with a pyfunc ``PythonModel``."""
    context = getattr(getattr(model.pyfunc, "_model_impl", None), "context", None)
    artifacts = getattr(context, "artifacts", None)
    return dict(artifacts) if isinstance(artifacts, dict) else {}


def model_probabilities(model: ServedModel) -> Callable[[pd.DataFrame], Any] | None:
    """The model's ``predict_proba(context, model_input)`` bound to its context, if it has
    one (called off the request path, on drift windows, to estimate accuracy)."""
    method = getattr(model.python_model, "predict_proba", None)
    if not callable(method):
        return None
    context = getattr(getattr(model.pyfunc, "_model_impl", None), "context", None)
    return lambda frame: method(context, frame)


class MonitoringRuntime:
    """Builds the monitoring hooks and routes of one serving process."""

    def __init__(self, settings: MonitoringSettings, store: PayloadStore,
                 alerts: AlertsSpec | None = None) -> None:
        self.settings, self.store, self.alerts = settings, store, alerts
        self.feedback: FeedbackService | None = None
        self.window: DriftWindow | None = None
        self.payload_log: PayloadLog | None = None

    def routes(self) -> list[BaseRoute]:
        """``POST /feedback`` and ``GET /monitoring``, bound to this runtime."""
        from .endpoints import get_monitoring, post_feedback

        return [Route("/feedback", post_feedback(self), methods=["POST"]),
                Route("/monitoring", get_monitoring(self), methods=["GET"])]

    def hooks(self, model: ServedModel, metrics: Metrics) -> ServingHooks:
        """Annotators and sinks for ``model``; registers the gauges on ``metrics`` (the drift
        series as a cached exposition)."""
        from ..dataplane.hooks import ServingHooks

        gauges = MonitoringGauges(metrics.registry)
        metrics.expositions.append(gauges.render_drift)
        labels = (model.name, model.version or "")
        python_model = getattr(model, "python_model", None)
        reward = getattr(python_model, "reward", None)
        path = model_artifacts(model).get(MONITORS_ARTIFACT)
        monitors = load_monitors(Path(path)) if path is not None else None
        annotators: list[Any] = []
        if monitors is not None:
            annotators.append(OutlierAnnotator(monitors, gauges, labels))
            if self.settings.is_adversarial_enabled and monitors.adversarial is not None:
                detector = monitors.adversarial.bound_to(model.pyfunc.predict)
                annotators.append(AdversarialAnnotator(detector, gauges, labels))
        self.payload_log = PayloadLog(self.store, gauges, capacity=self.settings.buffer_size,
                                      flush_interval_s=self.settings.flush_interval_s,
                                      annotators=annotators, retention=Retention.from_settings(
                                          self.store, self.settings, gauges))
        self.feedback = FeedbackService(self.store, self.payload_log, gauges,
                                        reward if callable(reward) else None,
                                        flush_interval_s=self.settings.flush_interval_s)
        if monitors is None:
            logger.warning("%s v%s was logged without monitors", model.name, model.version)
            return ServingHooks(sinks=[self.payload_log])
        alerter = None
        if self.alerts is not None:
            alerter = Alerter(self.alerts,
                              is_private_allowed=self.settings.is_private_webhook_allowed,
                              on_fired=lambda m, v, r: gauges.alerts.labels(m, v or "", r).inc(),
                              claim=self.store.coordination.claim_alert)
        self.window = DriftWindow(
            monitors, gauges, model=model.name, version=model.version,
            size=self.settings.window_size, interval_s=self.settings.drift_interval_s,
            alpha=self.settings.drift_alpha, store=self.store, alerter=alerter,
            error_rate=ErrorRate(metrics.registry), flush=self.payload_log.flush,
            feedback_rows=self.settings.feedback_window_rows,
            probabilities=model_probabilities(model))
        self.window.start()
        return ServingHooks(annotators=annotators,
                            sinks=[WindowAndLog(self.window, self.payload_log)])

    def require_feedback(self) -> FeedbackService:
        """The feedback service; ModelNotReady until the model has loaded."""
        if self.feedback is None:
            raise ModelNotReady("the model is still loading")
        return self.feedback


class WindowAndLog:
    """The payload log as the sink, closed with the drift window that reads what it wrote."""

    def __init__(self, window: DriftWindow, log: PayloadLog) -> None:
        self.window, self.log = window, log
        self.submit: Callable[[PredictionRecord], None] = log.submit  # the window: nothing

    async def aclose(self) -> None:
        """Stop the drift tests, then flush the log (whatever stopping the tests did)."""
        try:
            await self.window.aclose()
        finally:
            await self.log.aclose()


class ErrorRate:
    """Share of prediction requests answered with a 5xx since the previous call."""

    def __init__(self, registry: CollectorRegistry, name: str = "greenbutton_requests") -> None:
        self.registry, self.name = registry, name
        self.previous = (0.0, 0.0)

    def __call__(self) -> float | None:
        total = errors = 0.0
        for family in self.registry.collect():
            if family.name != self.name:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
                    errors += sample.value if sample.labels.get("status", "")[:1] == "5" else 0
        delta_total, delta_errors = total - self.previous[0], errors - self.previous[1]
        self.previous = (total, errors)
        return delta_errors / delta_total if delta_total > 0 else None
