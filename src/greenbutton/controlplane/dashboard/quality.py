"""Model quality over time, read from the payload store: drift tests and live feedback.

Each serving process stores its version's latest drift test in the payload store (the body of
``GET /monitoring``, with the newest payload row it tested). The store keeps only the latest, so
the control plane samples it every couple of seconds and keeps each new test in memory: drift
per feature and overall, outlier rate and the feedback figures, over time. Usage::

    history = QualityHistory(lambda: PayloadStore(uri))
    history.record("wine", "wine", ["1", "2"], now_s=time.time())   # blocking: run in a thread
    history.tests("wine")        # [DriftTest(at_s=…, version="1", overall_p=0.42, …), …]
    history.feedback("wine")     # {"1": FeedbackSummary(count=…, mean_reward=…), …}
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import GreenbuttonError
from ...monitoring.payload_store import FeedbackSummary, PayloadStore

log = logging.getLogger(__name__)

MAX_TESTS = 720
"""Drift tests kept per deployment: an hour at the default 10 s interval (one version)."""
KNOWN_KEYS = frozenset({"model", "window", "drift", "alerts_sent"})
"""Snapshot keys that are not figures; any other numeric key is charted as a figure."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift in one test."""

    p_value: float | None
    is_drift: bool


@dataclass(frozen=True)
class DriftTest:
    """One drift test of one version, as first seen by the control plane."""

    at_s: float
    version: str
    rows: int
    alpha: float | None
    overall_p: float | None
    is_drift: bool
    detectors: dict[str, FeatureDrift] = field(default_factory=dict)
    """Each detector's own verdict (features, mmd, predictions, labels…)."""
    features: dict[str, FeatureDrift] = field(default_factory=dict)
    figures: dict[str, float | None] = field(default_factory=dict)
    """outlier_rate, accuracy, mean_reward, error_rate… and any figure monitoring adds."""


def parse_test(at_s: float, version: str, snapshot: Mapping[str, Any]) -> DriftTest | None:
    """A ``GET /monitoring`` snapshot as a test (None: the version was not tested yet)."""
    drift = snapshot.get("drift")
    if not isinstance(drift, dict) or not isinstance(drift.get("overall"), dict):
        return None
    found_window = snapshot.get("window")
    window: dict[str, Any] = found_window if isinstance(found_window, dict) else {}
    detectors = {k: _verdict(v) for k, v in drift.items() if k != "overall" and isinstance(v, dict)}
    features: dict[str, FeatureDrift] = {}
    for result in (r for r in drift.values() if isinstance(r, dict)):
        for feature, body in (result.get("features") or {}).items():
            found = _verdict(body)
            kept = features.get(feature)
            if kept is None or _smaller(found.p_value, kept.p_value):
                features[str(feature)] = found
    overall = _verdict(drift["overall"])
    figures = {k: _number(v) for k, v in snapshot.items()
               if k not in KNOWN_KEYS and (isinstance(v, int | float) or v is None)
               and not isinstance(v, bool)}
    return DriftTest(at_s=at_s, version=version, rows=int(_number(window.get("rows")) or 0),
                     alpha=_number(window.get("alpha")), overall_p=overall.p_value,
                     is_drift=overall.is_drift, detectors=detectors, features=features,
                     figures=figures)


class QualityHistory:
    """The drift tests of each deployment's versions, in memory, bounded; thread-safe."""

    def __init__(self, open_store: Callable[[], PayloadStore], max_tests: int = MAX_TESTS) -> None:
        self._open_store = open_store
        self._store: PayloadStore | None = None
        self._lock = threading.Lock()
        self._recording = threading.Lock()
        """One sample at a time (the background sampler and a page's refresh may overlap)."""
        self._max_tests = max_tests
        self._tests: dict[str, deque[DriftTest]] = {}
        self._newest: dict[tuple[str, str], int] = {}
        self._feedback: dict[str, dict[str, FeedbackSummary]] = {}

    def _opened(self) -> PayloadStore | None:
        if self._store is None:
            try:
                self._store = self._open_store()
            except GreenbuttonError as error:  # unreachable now: the next sample retries
                log.info("payload store unavailable: %s", error)
        return self._store

    def record(self, name: str, model: str, versions: Iterable[str], now_s: float) -> None:
        """Keep each version's drift test if it is new, and the model's feedback figures."""
        with self._recording:
            self._record(name, model, versions, now_s)

    def _record(self, name: str, model: str, versions: Iterable[str], now_s: float) -> None:
        store = self._opened()
        if store is None:
            return
        found = []
        for version in versions:
            stored = store.coordination.drift_snapshot(model, version)
            if stored is None or self._newest.get((name, version)) == stored[0]:
                continue
            test = parse_test(now_s, version, stored[1])
            self._newest[(name, version)] = stored[0]
            if test is not None:
                found.append(test)
        summaries = {s.model_version or "": s for s in store.summaries() if s.model_name == model}
        with self._lock:
            kept = self._tests.setdefault(name, deque(maxlen=self._max_tests))
            kept.extend(found)
            self._feedback[model] = summaries

    def tests(self, name: str) -> list[DriftTest]:
        """Every kept test of deployment ``name``, oldest first."""
        with self._lock:
            return list(self._tests.get(name, ()))

    def feedback(self, model: str) -> dict[str, FeedbackSummary]:
        """version → feedback count, accuracy, mean error and mean reward (as last sampled)."""
        with self._lock:
            return dict(self._feedback.get(model, {}))

    def store(self) -> PayloadStore | None:
        """The payload store (opened on first use; None while it cannot be opened)."""
        return self._opened()


def _verdict(body: Any) -> FeatureDrift:
    if not isinstance(body, dict):
        return FeatureDrift(None, False)
    return FeatureDrift(_number(body.get("p_value")), bool(body.get("is_drift")))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _smaller(a: float | None, b: float | None) -> bool:
    return a is not None and (b is None or a < b)
