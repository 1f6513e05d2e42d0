"""Prometheus text → per-version rates and quantiles between two scrapes."""

from __future__ import annotations

import pytest

from greenbutton.controlplane.dashboard.series import (
    MetricsHistory,
    Scrape,
    VersionCounters,
    parse_metrics,
    points_between,
    quantile,
)
from greenbutton.dataplane.metrics import Metrics


def _exposition(requests: int, latency_s: float, errors: int = 0, version: str = "3") -> str:
    metrics = Metrics()
    for i in range(requests):
        failed = i < errors
        metrics.observe_request(model="digits", version=version, endpoint="/predict",
                                status=422 if failed else 200, latency_s=latency_s,
                                error_type="schema_mismatch" if failed else None)
    return metrics.render().decode()


def test_parse_metrics_sums_requests_and_errors_per_version() -> None:
    counters = parse_metrics(_exposition(10, 0.02, errors=3))
    assert counters["3"].requests == 10
    assert counters["3"].errors == 3
    assert counters["3"].buckets[-1] == (float("inf"), 10)


def test_parse_metrics_of_idle_process_is_empty() -> None:
    assert parse_metrics(_exposition(0, 0.0)) == {}


def test_quantile_interpolates_within_bucket() -> None:
    buckets = ((0.01, 0.0), (0.02, 100.0), (float("inf"), 100.0))
    assert quantile(0.5, buckets) == pytest.approx(0.015)


def test_quantile_of_empty_histogram_is_none() -> None:
    assert quantile(0.99, ((float("inf"), 0.0),)) is None


def test_points_between_give_rate_over_interval() -> None:
    before = Scrape(at_s=100.0, versions=parse_metrics(_exposition(10, 0.004)))
    now = Scrape(at_s=102.0, versions=parse_metrics(_exposition(30, 0.004, errors=4)))
    [point] = points_between(before, now)
    assert point.version == "3"
    assert point.requests_per_s == pytest.approx(10.0)
    assert point.errors_per_s == pytest.approx(2.0)
    assert point.p50_ms is not None and 2.5 <= point.p50_ms <= 5.0


def test_counter_reset_counts_from_zero() -> None:
    before = Scrape(at_s=0.0, versions={"3": VersionCounters(requests=50)})
    now = Scrape(at_s=1.0, versions={"3": VersionCounters(requests=5)})
    assert points_between(before, now)[0].requests_per_s == pytest.approx(5.0)


def test_history_is_bounded_and_yields_consecutive_points() -> None:
    history = MetricsHistory(max_scrapes=3)
    for second in range(5):
        history.add("digits", Scrape(at_s=float(second),
                                     versions={"1": VersionCounters(requests=second * 2.0)}))
    points = history.points("digits")
    assert [p.at_s for p in points] == [3.0, 4.0]
    assert all(p.requests_per_s == pytest.approx(2.0) for p in points)
    assert history.points("other") == []
