"""Generated Prometheus scrape config, alert rules and a Grafana dashboard per deployment.

The platform engineer gets files to drop into their own Prometheus and Grafana, never a YAML
to write by hand. YAML is emitted as JSON (JSON is valid YAML), so no YAML library is needed.
"""

from __future__ import annotations

import json
import re
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"invalid deployment name {name!r}")
    return name


def scrape_config(targets: dict[str, str], *, interval_s: float = 15.0,
                  file_sd: str | None = None, token_file: str | None = None) -> dict[str, Any]:
    """``prometheus.yml`` scraping ``/metrics`` of every serving process the controller lists
    in ``file_sd`` (its targets file: labels model, version, route), and of each fixed
    ``targets`` address (route name → ``host:port``).

    ``honor_labels``: a process's series already carry ``model`` and ``version``, equal to
    its target's; without it Prometheus would rename them ``exported_*``. ``token_file``: a
    file holding an API token with ``invoke`` on the models, for endpoints that need one.
    """
    jobs: list[dict[str, Any]] = []
    if file_sd is not None:
        jobs.append({"job_name": "greenbutton", "metrics_path": "/metrics",
                     "honor_labels": True,
                     "file_sd_configs": [{"files": [file_sd], "refresh_interval": "5s"}]})
    jobs += [{"job_name": f"greenbutton-{_check(name)}", "metrics_path": "/metrics",
              "honor_labels": True,
              "static_configs": [{"targets": [address], "labels": {"route": name}}]}
             for name, address in sorted(targets.items())]
    return {
        "global": {"scrape_interval": f"{interval_s:g}s",
                   "evaluation_interval": f"{interval_s:g}s"},
        "rule_files": ["greenbutton_rules.yml"],
        "scrape_configs": [{**job, "authorization": {"credentials_file": token_file}}
                           for job in jobs] if token_file else jobs,
    }


def alert_rules(*, outlier_rate: float = 0.05, error_rate: float = 0.05,
                p99_latency_s: float = 1.0, min_accuracy: float | None = None,
                min_reward: float | None = None) -> dict[str, Any]:
    """Prometheus alerting rules over greenbutton's series (per model and version)."""
    by = "by (model, version)"
    rules: list[dict[str, Any]] = [
        _rule("GreenbuttonDrift", 'max by (model, version) '
              '(greenbutton_drift_detected{detector="overall",feature=""}) > 0', "10m",
              "Drift (inputs, outputs, data quality, labels or performance) on "
              "{{ $labels.model }} v{{ $labels.version }}"),
        _rule("GreenbuttonOutlierRate",
              f"sum {by} (rate(greenbutton_outlier_rows_total[10m])) / "
              f"sum {by} (rate(greenbutton_prediction_rows_total[10m])) > {outlier_rate}", "10m",
              "Outlier rate above " + f"{outlier_rate:.0%}" + " on {{ $labels.model }}"),
        _rule("GreenbuttonErrorRate",
              f'sum {by} (rate(greenbutton_requests_total{{status=~"5.."}}[5m])) / '
              f"sum {by} (rate(greenbutton_requests_total[5m])) > {error_rate}", "5m",
              "Error rate above " + f"{error_rate:.0%}" + " on {{ $labels.model }}"),
        _rule("GreenbuttonLatencyP99",
              f"histogram_quantile(0.99, sum by (model, version, le) "
              f"(rate(greenbutton_request_latency_seconds_bucket[5m]))) > {p99_latency_s}",
              "5m", "p99 latency above " + f"{p99_latency_s}" + " s on {{ $labels.model }}"),
        # the payload log is the audit trail and the retraining data: a lost record is news
        _rule("GreenbuttonPayloadDropped",
              f"sum {by} (increase(greenbutton_payload_dropped_total[5m])) > 0", "0m",
              "Payload records dropped on {{ $labels.model }} v{{ $labels.version }}: its "
              "payload store cannot keep up or cannot write (disk full?)"),
    ]
    if min_accuracy is not None:
        rules.append(_rule("GreenbuttonAccuracyLow",
                           f"greenbutton_feedback_accuracy < {min_accuracy}", "1h",
                           "Live accuracy below threshold on {{ $labels.model }}"))
    if min_reward is not None:
        rules.append(_rule("GreenbuttonRewardLow",
                           f"greenbutton_feedback_mean_reward < {min_reward}", "1h",
                           "Mean reward below threshold on {{ $labels.model }}"))
    return {"groups": [{"name": "greenbutton", "rules": rules}]}


def _rule(name: str, expr: str, duration: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration, "labels": {"severity": "warning"},
            "annotations": {"summary": summary}}


DATASOURCE_INPUT = {"name": "DS_PROMETHEUS", "label": "Prometheus",
                    "description": "The Prometheus that scrapes greenbutton",
                    "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}
"""Grafana asks which Prometheus to use when the dashboard is imported."""


def grafana_dashboard(route: str | None = None) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) of one route (deployment), or of any route chosen in
    the dashboard (``route`` variable) when none is given: traffic, quality and drift."""
    selector = f'route="{_check(route)}"' if route else 'route=~"$route"'
    panels = [
        ("Requests / s", f"sum by (version, status) (rate(greenbutton_requests_total{{{selector}}}"
                         "[5m]))"),
        ("p99 latency (s)", "histogram_quantile(0.99, sum by (version, le) (rate("
                            f"greenbutton_request_latency_seconds_bucket{{{selector}}}[5m])))"),
        ("Errors / s",
         f"sum by (version, type) (rate(greenbutton_errors_total{{{selector}}}[5m]))"),
        ("Drift detected", f'max by (version, detector) (greenbutton_drift_detected{{{selector},'
                           'feature=""})'),
        ("Drift p-value", f'min by (version, detector) (greenbutton_drift_p_value{{{selector},'
                          'feature=""})'),
        ("Outlier rate", f"sum by (version) (rate(greenbutton_outlier_rows_total{{{selector}}}"
                         f"[10m])) / sum by (version) (rate(greenbutton_prediction_rows_total"
                         f"{{{selector}}}[10m]))"),
        ("Mean reward", f"max by (version) (greenbutton_feedback_mean_reward{{{selector}}})"),
        ("Accuracy", f"max by (version) (greenbutton_feedback_accuracy{{{selector}}})"),
        ("Performance: recent feedback, held-out, estimated without labels",
         f"max by (version, source) (greenbutton_performance{{{selector}}})"),
        ("Data quality: worst share of rows failing a check",
         f"max by (version, check) (greenbutton_data_quality_rate{{{selector}}})"),
        ("Dropped payload records / s",
         f"sum by (version) (rate(greenbutton_payload_dropped_total{{{selector}}}[5m]))"),
        ("Payload buffer fill (bytes)",
         f"max by (version) (greenbutton_payload_buffer_bytes{{{selector}}})"),
    ]
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    variables: list[dict[str, Any]] = []
    if not route:
        variables.append({"name": "route", "label": "Route", "type": "query",
                          "datasource": datasource, "refresh": 2, "includeAll": True,
                          "multi": True, "query": "label_values(greenbutton_requests_total, "
                          "route)", "definition": "label_values(greenbutton_requests_total, "
                          "route)"})
    name = route or "all routes"
    return {
        "__inputs": [DATASOURCE_INPUT],
        "__requires": [{"type": "datasource", "id": "prometheus", "name": "Prometheus",
                        "version": "1.0.0"}],
        "title": f"greenbutton — {name}", "uid": f"gb-{route or 'routes'}"[:40],
        "schemaVersion": 39, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": variables},
        "panels": [
            {"id": i + 1, "type": "timeseries", "title": title,
             "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
             "datasource": datasource,
             "targets": [{"expr": expr, "legendFormat": "{{version}}", "refId": "A"}]}
            for i, (title, expr) in enumerate(panels)
        ],
    }


def render_yaml(document: dict[str, Any]) -> str:
    """A YAML document as JSON text (every JSON document is valid YAML)."""
    return json.dumps(document, indent=2) + "\n"
