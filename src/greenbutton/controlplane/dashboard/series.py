"""Serving metrics as time series: parse Prometheus text, keep recent scrapes, derive rates.

The serving processes export cumulative counters; a chart wants rates and quantiles over time.
``MetricsHistory`` keeps the last scrapes of each deployment and turns each pair of consecutive
scrapes into one point per version (what ``rate()`` and ``histogram_quantile()`` do in
Prometheus, over the interval between two scrapes). Usage::

    history = MetricsHistory()
    history.add("digits", Scrape(at_s=time.time(), versions=parse_metrics(text)))
    history.points("digits")   # [Point(at_s=…, version="3", requests_per_s=…, p99_ms=…), …]
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "greenbutton_requests_total"
ERRORS = "greenbutton_errors_total"
LATENCY_BUCKET = "greenbutton_request_latency_seconds_bucket"


@dataclass(frozen=True)
class VersionCounters:
    """Cumulative counters of one model version in one scrape (summed over endpoints)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    """(upper bound in seconds, cumulative count), sorted by bound; the last bound is +inf."""


@dataclass(frozen=True)
class Scrape:
    """Every version's counters at one moment (wall-clock seconds)."""

    at_s: float
    versions: dict[str, VersionCounters] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """One version's traffic over the interval that ends at ``at_s``."""

    at_s: float
    version: str
    requests_per_s: float
    errors_per_s: float
    p50_ms: float | None
    p99_ms: float | None


def parse_metrics(text: str) -> dict[str, VersionCounters]:
    """Requests, errors and latency buckets per version from a Prometheus text exposition."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            version = sample.labels.get("version", "")
            if sample.name == REQUESTS:
                requests[version] = requests.get(version, 0.0) + sample.value
            elif sample.name == ERRORS:
                errors[version] = errors.get(version, 0.0) + sample.value
            elif sample.name == LATENCY_BUCKET:
                bound = float(sample.labels["le"])
                per_bound = buckets.setdefault(version, {})
                per_bound[bound] = per_bound.get(bound, 0.0) + sample.value
    versions = set(requests) | set(errors) | set(buckets)
    return {
        v: VersionCounters(requests.get(v, 0.0), errors.get(v, 0.0),
                           tuple(sorted(buckets.get(v, {}).items())))
        for v in versions
    }


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile (seconds) of a cumulative histogram, interpolated within buckets."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            width = count - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def _delta(now: VersionCounters, before: VersionCounters | None) -> VersionCounters:
    """What happened between two scrapes; a counter that went down means a restart."""
    if before is None or now.requests < before.requests:
        return now
    old = dict(before.buckets)
    return VersionCounters(
        requests=now.requests - before.requests,
        errors=max(now.errors - before.errors, 0.0),
        buckets=tuple((b, max(c - old.get(b, 0.0), 0.0)) for b, c in now.buckets),
    )


def points_between(before: Scrape, now: Scrape) -> list[Point]:
    """One point per version seen in ``now``, for the interval since ``before``."""
    elapsed_s = now.at_s - before.at_s
    if elapsed_s <= 0:
        return []
    found = []
    for version in sorted(now.versions):
        delta = _delta(now.versions[version], before.versions.get(version))
        p50, p99 = quantile(0.5, delta.buckets), quantile(0.99, delta.buckets)
        found.append(Point(
            at_s=now.at_s,
            version=version,
            requests_per_s=delta.requests / elapsed_s,
            errors_per_s=delta.errors / elapsed_s,
            p50_ms=None if p50 is None else p50 * 1000,
            p99_ms=None if p99 is None else p99 * 1000,
        ))
    return found


class MetricsHistory:
    """The last ``max_scrapes`` scrapes of each deployment (thread-safe, bounded)."""

    def __init__(self, max_scrapes: int = 90) -> None:
        self._lock = threading.Lock()
        self._max_scrapes = max_scrapes
        self._scrapes: dict[str, deque[Scrape]] = {}

    def add(self, name: str, scrape: Scrape) -> None:
        """Record one scrape of deployment ``name``."""
        with self._lock:
            kept = self._scrapes.setdefault(name, deque(maxlen=self._max_scrapes))
            kept.append(scrape)

    def last_at_s(self, name: str) -> float | None:
        """When ``name`` was last scraped (None: never)."""
        with self._lock:
            kept = self._scrapes.get(name)
            return kept[-1].at_s if kept else None

    def latest(self, name: str) -> Scrape | None:
        """The most recent scrape of ``name``."""
        with self._lock:
            kept = self._scrapes.get(name)
            return kept[-1] if kept else None

    def points(self, name: str) -> list[Point]:
        """Every point that consecutive scrapes of ``name`` give, oldest first."""
        with self._lock:
            kept = list(self._scrapes.get(name, ()))
        return [p for before, now in zip(kept, kept[1:], strict=False)
                for p in points_between(before, now)]
