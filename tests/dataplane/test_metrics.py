"""Metrics: one registry per instance, labelled by model and version."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from greenbutton.dataplane.metrics import Metrics

LABELS = {"model": "digits", "version": "3"}


def test_metrics_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_prediction(model="digits", version="3", rows=5, latency_s=0.01)
    assert second.registry.get_sample_value("greenbutton_prediction_rows_total", LABELS) is None


def test_observe_request_counts_status_and_error_type() -> None:
    metrics = Metrics()
    metrics.observe_request(
        model="digits",
        version="3",
        endpoint="/predict",
        status=422,
        latency_s=0.002,
        error_type="schema_mismatch",
    )
    labels = {**LABELS, "endpoint": "/predict"}
    value = metrics.registry.get_sample_value
    assert value("greenbutton_requests_total", {**labels, "status": "422"}) == 1
    assert value("greenbutton_errors_total", {**labels, "type": "schema_mismatch"}) == 1
    assert value("greenbutton_request_latency_seconds_count", labels) == 1


def test_set_ready_publishes_gauge() -> None:
    metrics = Metrics()
    metrics.set_ready(model="digits", version="3", is_ready=True)
    assert metrics.registry.get_sample_value("greenbutton_model_ready", LABELS) == 1


def test_render_returns_text_exposition() -> None:
    metrics = Metrics()
    metrics.set_ready(model="digits", version=None, is_ready=False)
    assert b'greenbutton_model_ready{model="digits",version=""} 0.0' in metrics.render()


def test_merged_expositions_sum_counters_and_max_gauges() -> None:
    from greenbutton.dataplane.shared_metrics import merge_expositions

    workers = [Metrics(), Metrics()]
    for metrics, ready in zip(workers, (True, False), strict=True):
        metrics.observe_request(model="m", version="1", endpoint="/predict", status=200,
                                latency_s=0.01)
        metrics.set_ready(model="m", version="1", is_ready=ready)
        metrics.in_flight.set(2)
    merged = merge_expositions([m.render().decode() for m in workers])
    assert ('greenbutton_requests_total{endpoint="/predict",model="m",status="200",version="1"}'
            ' 2.0') in merged
    assert 'greenbutton_model_ready{model="m",version="1"} 1.0' in merged
    assert "greenbutton_requests_in_flight 4.0" in merged
    assert "_created" not in merged
    # it parses back as it was written (a counter's TYPE line names its _total samples)
    kinds = {f.name: f.type for f in text_string_to_metric_families(merged)}
    assert kinds["greenbutton_requests"] == "counter"
    assert kinds["greenbutton_request_latency_seconds"] == "histogram"
    assert "unknown" not in kinds.values()


def test_a_retired_worker_keeps_its_counts_but_not_its_gauges(tmp_path: Path) -> None:
    from greenbutton.dataplane.shared_metrics import SharedMetrics, merge_expositions, retire

    dead, live = Metrics(), Metrics()
    for metrics in (dead, live):
        metrics.observe_request(model="m", version="1", endpoint="/predict", status=200,
                                latency_s=0.01)
    dead.in_flight.set(3)  # killed in the middle of three requests
    SharedMetrics(tmp_path, dead.render).publish()  # written under this process's pid
    retire(tmp_path, os.getpid())
    retire(tmp_path, 999_999_999)  # a worker that never published: nothing to do
    merged = merge_expositions([p.read_text() for p in tmp_path.glob("*.prom")]
                               + [live.render().decode()])
    assert ('greenbutton_requests_total{endpoint="/predict",model="m",status="200",version="1"}'
            ' 2.0') in merged
    assert "greenbutton_requests_in_flight 0.0" in merged
    assert [p.name for p in tmp_path.iterdir()] == [f"{os.getpid()}.prom"]


def test_render_on_a_full_disk_answers_every_worker_fresh(tmp_path: Path) -> None:
    from greenbutton.dataplane.shared_metrics import SharedMetrics

    other, own = Metrics(), Metrics()
    for metrics in (other, own):
        metrics.observe_request(model="m", version="1", endpoint="/predict", status=200,
                                latency_s=0.01)
    (tmp_path / "999999999.prom").write_bytes(other.render())  # another worker's, written
    shared = SharedMetrics(tmp_path, own.render)
    shared.publish()  # this worker's count of 1, before its disk filled up
    own.observe_request(model="m", version="1", endpoint="/predict", status=200, latency_s=0.01)
    (tmp_path / f"{os.getpid()}.tmp").symlink_to("/dev/full")  # its write: ENOSPC
    merged = shared.render().decode()
    assert ('greenbutton_requests_total{endpoint="/predict",model="m",status="200",version="1"}'
            ' 3.0') in merged


def test_drift_series_render_with_the_metrics_and_follow_each_published_test() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from greenbutton.dataplane.shared_metrics import merge_expositions
    from greenbutton.monitoring.drift import DriftResult
    from greenbutton.monitoring.gauges import MonitoringGauges

    metrics = Metrics()
    gauges = MonitoringGauges(metrics.registry)
    metrics.expositions.append(gauges.render_drift)
    metrics.set_ready(model="m", version="1", is_ready=True)
    series = 'greenbutton_drift_p_value{detector="features",feature="x",model="m",version="1"}'
    for p_value in (0.5, 0.001):
        feature = DriftResult("features", 0.2, p_value, p_value < 0.01)
        gauges.publish_drift("m", "1", {"features": DriftResult(
            "features", 0.2, p_value, p_value < 0.01, {"x": feature})}, rows=100)
        text = metrics.render().decode()
        assert f"{series} {p_value}" in text  # the cache follows every published test
        assert 'greenbutton_model_ready{model="m",version="1"} 1.0' in text
    # one valid exposition: every family once, and workers' texts still merge
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)) and "greenbutton_drift_p_value" in names
    assert f"{series} 0.001" in merge_expositions([text, text])


def test_merged_drift_series_report_the_worker_that_found_drift() -> None:
    # each worker tests its own window: the merged flag is any worker's, and the p-value
    # beside it is that worker's (the smallest), not a calmer sibling's
    from greenbutton.dataplane.shared_metrics import merge_expositions
    from greenbutton.monitoring.drift import DriftResult
    from greenbutton.monitoring.gauges import MonitoringGauges

    texts = []
    for p_value in (0.002, 0.6):
        gauges = MonitoringGauges(Metrics().registry)
        gauges.publish_drift("m", "1", {"features": DriftResult(
            "features", 1 - p_value, p_value, p_value < 0.01)}, rows=100)
        texts.append(gauges.render_drift().decode())
    merged = merge_expositions(texts)
    labels = '{detector="features",feature="",model="m",version="1"}'
    assert f"greenbutton_drift_detected{labels} 1.0" in merged
    assert f"greenbutton_drift_p_value{labels} 0.002" in merged
    assert f"greenbutton_drift_statistic{labels} 0.998" in merged


def test_data_quality_rates_and_performance_published() -> None:
    from greenbutton.monitoring.drift import DriftResult
    from greenbutton.monitoring.gauges import MonitoringGauges

    gauges = MonitoringGauges(Metrics().registry)
    missing = DriftResult("quality", 0.3, 1e-9, True)
    column = DriftResult("quality", 0.3, 1e-9, True, {"missing": missing})
    gauges.publish_drift("m", "1", {"quality": DriftResult(
        "quality", 0.3, 1e-8, True, {"age": column})}, rows=100)
    gauges.publish_performance("m", "1", {"measure": "accuracy", "rows": 150, "recent": 0.7,
                                          "held_out": 0.95, "estimated": {"accuracy": 0.93}})
    text = gauges.render_drift().decode()
    assert ('greenbutton_data_quality_rate{check="missing",feature="age",model="m",'
            'version="1"} 0.3') in text
    for source, value in (("recent_feedback", 0.7), ("held_out", 0.95), ("estimated", 0.93)):
        assert (f'greenbutton_performance{{measure="accuracy",model="m",source="{source}",'
                f'version="1"}} {value}') in text
    assert 'greenbutton_performance_feedback_rows{model="m",version="1"} 150.0' in text
