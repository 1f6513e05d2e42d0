"""The deployment page's live JSON: traffic, per-version shares, quality and drift over time.

Plain functions from what ``LiveMetrics`` and ``QualityHistory`` keep to what the page's
charts and tables draw; numbers are rounded for the wire, never invented (a figure nobody
measured is ``null``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...controller.loop import DeploymentStatus
from .quality import DriftTest, QualityHistory
from .rollout import Rollout
from .series import MetricsHistory, Point

SHARE_WINDOW_S = 30.0
"""Observed traffic shares are over the last this-many seconds of scrapes."""
MAX_TESTS_SENT = 360
WATCHED_FEATURES = 3
"""Features charted over time unless the page asks for others: the most drifted now."""
MAX_FEATURES_ASKED = 8


def live_json(status: DeploymentStatus, rollout: Rollout, history: MetricsHistory,
              quality: QualityHistory | None, backends: dict[str, str],
              asked: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the deployment page polls for, as plain JSON."""
    name = status.name
    latest = history.latest(name)
    points = history.points(name)
    shadows = {str(t.version) for t in status.traffic if t.weight <= 0 and t.mirror_percent > 0}
    return {
        "name": name,
        "status": status.model_dump(mode="json"),
        "rollout": {"step": rollout.step.value, "text": rollout.text},
        "backends": backends,
        "scraped_at": None if latest is None else latest.at_s,
        "totals": {} if latest is None else {
            v: {"requests": c.requests, "errors": c.errors}
            for v, c in sorted(latest.versions.items())},
        "points": [_point(p) for p in points],
        "shares": observed_shares(points, exclude=shadows),
        "quality": None if quality is None else quality_json(
            quality.tests(name), quality.feedback(status.model), asked),
    }


def observed_shares(points: Sequence[Point], exclude: set[str],
                    window_s: float = SHARE_WINDOW_S) -> dict[str, float]:
    """version → percent of the requests served over the last ``window_s`` (mirrored copies
    to shadows left out: they are not the callers' traffic)."""
    if not points:
        return {}
    since = points[-1].at_s - window_s
    served: dict[str, float] = {}
    for point in points:
        if point.at_s > since and point.version not in exclude:
            served[point.version] = served.get(point.version, 0.0) + point.requests_per_s
    total = sum(served.values())
    return {v: round(100 * r / total, 1) for v, r in sorted(served.items())} if total else {}


def quality_json(tests: Sequence[DriftTest], feedback: dict[str, Any],
                 asked: Sequence[str]) -> dict[str, Any]:
    """Drift tests over time (overall and per watched feature), latest verdicts, feedback."""
    tests = list(tests)[-MAX_TESTS_SENT:]
    latest: dict[str, DriftTest] = {}
    for test in tests:
        latest[test.version] = test
    newest = tests[-1] if tests else None
    ranked = sorted(newest.features, key=lambda f: _rank(newest.features[f].p_value)) if newest \
        else []
    known = {f for t in latest.values() for f in t.features}
    watched = [f for f in asked if f in known][:MAX_FEATURES_ASKED] or ranked[:WATCHED_FEATURES]
    return {
        "alpha": newest.alpha if newest else None,
        "tests": [{"t": round(t.at_s, 3), "version": t.version, "rows": t.rows,
                   "overall_p": _round(t.overall_p), "is_drift": t.is_drift,
                   "figures": {k: _round(v) for k, v in t.figures.items()}} for t in tests],
        "features": ranked,
        "watched": watched,
        "feature_series": {f: [[round(t.at_s, 3), t.version, _round(t.features[f].p_value),
                                t.features[f].is_drift] for t in tests if f in t.features]
                           for f in watched},
        "latest": {v: {
            "t": round(t.at_s, 3), "rows": t.rows, "overall_p": _round(t.overall_p),
            "is_drift": t.is_drift, "figures": {k: _round(x) for k, x in t.figures.items()},
            "detectors": {k: [_round(d.p_value), d.is_drift] for k, d in t.detectors.items()},
            "features": {k: [_round(d.p_value), d.is_drift] for k, d in t.features.items()},
        } for v, t in sorted(latest.items())},
        "feedback": {v: {"count": s.count, "accuracy": _round(s.accuracy),
                         "mean_abs_error": _round(s.mean_abs_error),
                         "mean_reward": _round(s.mean_reward)}
                     for v, s in sorted(feedback.items())},
    }


def _rank(p_value: float | None) -> float:
    return 2.0 if p_value is None else p_value


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{digits}g}")


def _point(point: Point) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "t": round(point.at_s, 3),
        "version": point.version,
        "rps": rounded(point.requests_per_s),
        "errors_ps": rounded(point.errors_per_s),
        "p50_ms": rounded(point.p50_ms),
        "p99_ms": rounded(point.p99_ms),
    }
