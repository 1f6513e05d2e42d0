"""Drift and feedback over time, sampled from a real (SQLite) payload store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenbutton.controlplane.dashboard.quality import QualityHistory, parse_test
from greenbutton.errors import NotReady
from greenbutton.monitoring.payload_batches import utc_now
from greenbutton.monitoring.payload_store import PayloadStore


def snapshot(overall_p: float, pixel_p: float, *, rows: int = 100,
             **figures: Any) -> dict[str, Any]:
    """What a serving process stores for ``GET /monitoring`` after a drift test."""
    return {
        "model": {"name": "digits", "version": "1"},
        "window": {"rows": rows, "size": 100, "alpha": 0.01},
        "drift": {
            "features": {"statistic": 0.4, "p_value": overall_p, "is_drift": overall_p < 0.01,
                         "features": {"pixel_1": {"statistic": 0.1, "p_value": 0.9,
                                                  "is_drift": False},
                                      "pixel_2": {"statistic": 0.5, "p_value": pixel_p,
                                                  "is_drift": pixel_p < 0.001}}},
            "mmd": {"statistic": 0.01, "p_value": 0.5, "is_drift": False},
            "overall": {"statistic": 0.4, "p_value": overall_p, "is_drift": overall_p < 0.01},
        },
        "outlier_rate": 0.02, "accuracy": None, "mean_reward": -0.36, **figures,
    }


@pytest.fixture
def store(tmp_path: Path) -> PayloadStore:
    return PayloadStore(f"sqlite:///{tmp_path / 'monitoring.db'}")


def test_parse_test_reads_features_detectors_and_figures() -> None:
    test = parse_test(10.0, "1", snapshot(0.004, 0.0001, missing_rate=0.1))
    assert test is not None
    assert test.overall_p == 0.004 and test.is_drift and test.alpha == 0.01
    assert test.features["pixel_2"].p_value == 0.0001 and test.features["pixel_2"].is_drift
    assert set(test.detectors) == {"features", "mmd"}
    assert test.figures == {"outlier_rate": 0.02, "accuracy": None, "mean_reward": -0.36,
                            "missing_rate": 0.1}


def test_parse_test_of_untested_version_is_none() -> None:
    assert parse_test(1.0, "1", {"window": {"rows": 0}, "drift": None}) is None


def test_record_keeps_each_new_test_once(store: PayloadStore) -> None:
    history = QualityHistory(lambda: store)
    store.coordination.save_drift_snapshot("digits", "1", 40, snapshot(0.6, 0.5))
    history.record("digits", "digits", ["1"], now_s=1.0)
    history.record("digits", "digits", ["1"], now_s=2.0)  # the same test: not kept twice
    store.coordination.save_drift_snapshot("digits", "1", 90, snapshot(0.001, 0.00001))
    history.record("digits", "digits", ["1"], now_s=3.0)
    tests = history.tests("digits")
    assert [(t.at_s, t.overall_p) for t in tests] == [(1.0, 0.6), (3.0, 0.001)]
    assert [t.features["pixel_2"].is_drift for t in tests] == [False, True]


def test_record_is_bounded(store: PayloadStore) -> None:
    history = QualityHistory(lambda: store, max_tests=3)
    for newest in range(5):
        store.coordination.save_drift_snapshot("digits", "1", newest + 1, snapshot(0.5, 0.5))
        history.record("digits", "digits", ["1"], now_s=float(newest))
    assert [t.at_s for t in history.tests("digits")] == [2.0, 3.0, 4.0]


def test_record_reads_feedback_per_version(store: PayloadStore) -> None:
    for request_id, version, reward in (("a", "1", -0.5), ("b", "1", -0.3), ("c", "2", -0.1)):
        store.save_feedback({"request_id": request_id, "model_name": "wine",
                             "model_version": version, "truth": None, "reward": reward,
                             "is_correct": None, "abs_error": None, "received_at": utc_now()},
                            replace=False)
    history = QualityHistory(lambda: store)
    history.record("wine", "wine", ["1", "2"], now_s=1.0)
    feedback = history.feedback("wine")
    assert feedback["1"].count == 2 and feedback["1"].mean_reward == pytest.approx(-0.4)
    assert feedback["2"].mean_reward == pytest.approx(-0.1)


def test_record_without_store_keeps_nothing_and_retries() -> None:
    opened: list[int] = []

    def unavailable() -> PayloadStore:
        opened.append(1)
        raise NotReady("payload store down")

    history = QualityHistory(unavailable)
    history.record("digits", "digits", ["1"], now_s=1.0)
    history.record("digits", "digits", ["1"], now_s=2.0)
    assert history.tests("digits") == [] and len(opened) == 2
