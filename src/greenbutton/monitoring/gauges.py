"""Prometheus collectors of the monitors, registered on the serving process's own registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from .drift import DriftResult
from .payload_store import FeedbackSummary

MODEL = ("model", "version")
DRIFT = (*MODEL, "detector", "feature")


class MonitoringGauges:
    """Drift, outlier, payload-log, feedback and alert series; one instance per registry.

    The drift series (three per feature and detector: ~200 for a 64-feature model) change
    only when a window is tested, every few seconds, yet rendering them was most of the cost
    of every ``/metrics`` exposition (which each worker writes every second, on its request
    loop). They live in :attr:`drift_registry`, rendered once per test by
    :meth:`render_drift`; the serving metrics append that text to their own.
    """

    def __init__(self, registry: CollectorRegistry, namespace: str = "greenbutton") -> None:
        self.drift_registry = CollectorRegistry(auto_describe=True)
        self._drift_text: bytes | None = None

        def gauge(name: str, doc: str, labels: tuple[str, ...],
                  on: CollectorRegistry = registry) -> Gauge:
            return Gauge(name, doc, labels, namespace=namespace, registry=on)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, registry=registry)

        drift = self.drift_registry
        self.drift_statistic = gauge("drift_statistic", "Test statistic of the latest drift "
                                     "test (feature \"\" = the detector overall).", DRIFT, drift)
        self.drift_p_value = gauge("drift_p_value", "p-value of the latest drift test "
                                   "(per feature: uncorrected).", DRIFT, drift)
        self.drift_detected = gauge("drift_detected", "1 when the latest drift test rejects "
                                    "'same distribution as the reference' at drift_alpha.", DRIFT,
                                    drift)
        self.drift_window_rows = gauge("drift_window_rows", "Rows in the latest drift window.",
                                       MODEL, drift)
        self.quality_rate = gauge("data_quality_rate", "Share of the latest window's rows "
                                  "failing a data-quality check (check: missing, type, range, "
                                  "unseen).", (*MODEL, "feature", "check"), drift)
        self.performance = gauge("performance", "Model performance by source: recent_feedback "
                                 "(the newest labelled rows), held_out (at log time), estimated "
                                 "(from the model's confidence on the window, no labels).",
                                 (*MODEL, "measure", "source"), drift)
        self.performance_rows = gauge("performance_feedback_rows", "Labelled rows in the "
                                      "latest performance test.", MODEL, drift)
        self.outlier_rows = counter("outlier_rows", "Rows flagged as outliers.", MODEL)
        self.adversarial_rows = counter("adversarial_rows", "Rows flagged as adversarial.", MODEL)
        self.payload_dropped = counter("payload_dropped", "Payload records dropped because the "
                                       "buffer was full or the store failed.", MODEL)
        self.payload_buffer_bytes = gauge("payload_buffer_bytes", "Bytes of payload records "
                                          "held in memory: buffered, or being written.", ())
        self.payload_buffer_max_bytes = gauge("payload_buffer_max_bytes", "The payload "
                                              "buffer's bound (monitoring.buffer_max_bytes); "
                                              "records beyond it are dropped.", ())
        self.payload_pruned = counter("payload_pruned", "Payload records deleted by retention "
                                      "(payload_retention_days, payload_max_rows).", ())
        self.payload_prune_failed = counter("payload_prune_failed", "Retention prunes that "
                                            "failed (retried one interval later).", ())
        self.feedback = counter("feedback", "Feedback accepted, by kind (truth/reward).",
                                (*MODEL, "kind"))
        self.feedback_count = gauge("feedback_joined", "Feedback records joined with "
                                    "logged predictions, per version.", MODEL)
        self.accuracy = gauge("feedback_accuracy", "Share of feedback truths equal to the "
                              "prediction (classifiers).", MODEL)
        self.abs_error = gauge("feedback_mean_absolute_error", "Mean |prediction - truth| "
                               "(regressors).", MODEL)
        self.reward = gauge("feedback_mean_reward", "Mean reward from feedback.", MODEL)
        self.alerts = counter("alerts_fired", "Alerts sent, by rule.", (*MODEL, "rule"))

    def publish_drift(self, model: str, version: str | None,
                      results: dict[str, DriftResult], rows: int) -> None:
        """Set the drift series from one window's results."""
        labels = (model, version or "")
        self.drift_window_rows.labels(*labels).set(rows)
        for detector, result in results.items():
            self._set(labels, detector, "", result)
            for feature, child in result.features.items():
                self._set(labels, detector, feature, child)
        quality = results.get("quality")
        for feature, checks in (quality.features.items() if quality is not None else ()):
            for check, result in checks.features.items():
                self.quality_rate.labels(*labels, feature, check).set(result.statistic)
        self._drift_text = None  # rendered again when next asked for

    def publish_performance(self, model: str, version: str | None,
                            performance: dict[str, Any]) -> None:
        """Set the performance series from a window's performance summary."""
        labels = (model, version or "")
        measure = performance.get("measure") or "accuracy"
        estimated = performance.get("estimated") or {}
        self.performance_rows.labels(*labels).set(performance.get("rows") or 0)
        for source, value in (("recent_feedback", performance.get("recent")),
                              ("held_out", performance.get("held_out")),
                              ("estimated", estimated.get("accuracy"))):
            if value is not None:
                name = "accuracy" if source == "estimated" else measure
                self.performance.labels(*labels, name, source).set(value)
        self._drift_text = None

    def render_drift(self) -> bytes:
        """The drift series in Prometheus text format, rendered once per published test."""
        text = self._drift_text
        if text is None:
            text = self._drift_text = generate_latest(self.drift_registry)
        return text

    def _set(self, labels: tuple[str, str], detector: str, feature: str,
             result: DriftResult) -> None:
        self.drift_statistic.labels(*labels, detector, feature).set(result.statistic)
        self.drift_p_value.labels(*labels, detector, feature).set(result.p_value)
        self.drift_detected.labels(*labels, detector, feature).set(1 if result.is_drift else 0)

    def publish_feedback(self, summaries: list[FeedbackSummary]) -> None:
        """Set the live quality series from feedback summaries."""
        for s in summaries:
            labels = (s.model_name, s.model_version or "")
            self.feedback_count.labels(*labels).set(s.count)
            for gauge, value in ((self.accuracy, s.accuracy), (self.abs_error, s.mean_abs_error),
                                 (self.reward, s.mean_reward)):
                if value is not None:
                    gauge.labels(*labels).set(value)
