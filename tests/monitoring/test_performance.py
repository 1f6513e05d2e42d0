"""Performance from feedback, row by row; drops tested against held-out rows; estimated too."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from greenbutton.errors import InvalidInput
from greenbutton.monitoring.drift import Window
from greenbutton.monitoring.monitors import HeldOut, Monitors, fit
from greenbutton.monitoring.payload_batches import utc_now
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.performance import (
    ConfidenceEstimator,
    PerformanceDetector,
    row_outcomes,
)


def test_row_outcomes_score_every_row() -> None:
    assert row_outcomes([1, 2, 3, 4], [1, 2, 0, 4]) == ("accuracy", [1.0, 1.0, 0.0, 1.0])
    assert row_outcomes(["a", "b"], ["a", "a"]) == ("accuracy", [1.0, 0.0])
    assert row_outcomes([1.5, 2.0], [1.0, 3.0]) == ("error", [0.5, 1.0])


def outcomes(rng: np.random.Generator, rows: int, accuracy: float) -> np.ndarray:
    return (rng.random(rows) < accuracy).astype(float)


def test_accuracy_20_points_lower_over_200_rows_flagged() -> None:
    rng = np.random.default_rng(0)
    detector = PerformanceDetector("accuracy", outcomes(rng, 300, 0.95))
    worse = Window(pd.DataFrame(), np.empty(0), outcomes=outcomes(rng, 200, 0.75))
    assert detector.test(worse, alpha=0.01 / 7).is_drift


def test_accuracy_like_the_held_out_rows_not_flagged() -> None:
    rng = np.random.default_rng(1)
    detector = PerformanceDetector("accuracy", outcomes(rng, 300, 0.95))
    same = Window(pd.DataFrame(), np.empty(0), outcomes=outcomes(rng, 200, 0.95))
    assert not detector.test(same, alpha=0.01).is_drift


def test_regression_errors_growing_flagged() -> None:
    rng = np.random.default_rng(2)
    detector = PerformanceDetector("error", np.abs(rng.normal(size=300)))
    larger = Window(pd.DataFrame(), np.empty(0), outcomes=np.abs(rng.normal(0, 1.6, 200)))
    assert detector.test(larger, alpha=0.01).is_drift


def test_confidence_estimate_follows_the_accuracy_of_less_confident_rows() -> None:
    """Calibrated on held-out rows right with the probability the model gave; the window's
    rows are less confident (a covariate shift): expected accuracy 0.65, not the held-out
    0.75. 2,000 rows: the estimate's sampling error is ~0.01, the calibration's ~0.01."""
    rng = np.random.default_rng(3)
    top = rng.uniform(0.5, 1.0, 3000)
    estimator = ConfidenceEstimator.fit(np.column_stack([top, 1 - top]),
                                        rng.random(3000) < top)
    shifted = rng.uniform(0.5, 0.8, 2000)
    estimate = estimator.estimate(np.column_stack([shifted, 1 - shifted]))
    assert estimate is not None
    assert estimate["accuracy"] == pytest.approx(0.65, abs=0.03)
    assert estimate["low"] < 0.65 < estimate["high"]


def _coverage(seed: int, chances: tuple[float, float], held_out_rows: int, trials: int
              ) -> float:
    """Share of trials whose interval covers the window's accuracy: each trial calibrates on
    ``held_out_rows`` rows right with the probability the model gave (drawn uniformly from
    ``chances``), then estimates a window of 100 such rows."""
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(trials):
        top = rng.uniform(*chances, held_out_rows)
        estimator = ConfidenceEstimator.fit(np.column_stack([top, 1 - top]),
                                            rng.random(held_out_rows) < top)
        window = rng.uniform(*chances, 100)
        actual = float(np.mean(rng.random(100) < window))
        estimate = estimator.estimate(np.column_stack([window, 1 - window]))
        assert estimate is not None
        covered += estimate["low"] <= actual <= estimate["high"]
    return covered / trials


def test_confidence_interval_covers_the_window_accuracy_about_95_percent_of_the_time() -> None:
    """300 trials, each a fresh calibration on 100 held-out rows and a window of 100: the
    interval counts the calibration's own error, so it covers ~95 % of windows here (~77 %
    with the spread of right answers alone); 85 % lies between the two."""
    assert _coverage(6, (0.6, 1.0), 100, 300) >= 0.85


def test_confidence_interval_covers_an_accurate_model_too() -> None:
    """A model right 97 % of the time, calibrated on 85 held-out rows (some such sets have
    no wrong row at all, and a plug-in variance m (1 - m) near 1 is near 0): the interval
    covers 97 % of windows of 100 over 2,000 trials (88 % with plug-in variances);
    breast cancer's model in the calibration bench is such a model."""
    assert _coverage(8, (0.95, 0.99), 85, 400) >= 0.93


@pytest.fixture(scope="module")
def labelled() -> tuple[Monitors, pd.DataFrame, np.ndarray, Any]:
    """Monitors of a classifier fitted with held-out rows, and fresh rows with truths."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)

    def rows(count: int) -> tuple[pd.DataFrame, np.ndarray]:
        x = rng.normal(size=(count, 4))
        y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, count) > 0).astype(np.int64)
        return pd.DataFrame(x, columns=list("abcd")), y

    (train, y_train), (held, y_held), (fresh, y_fresh) = rows(800), rows(300), rows(100)
    model = LogisticRegression().fit(train, y_train)
    monitors = fit(train, model.predict(train), held_out=HeldOut(
        y_held, model.predict(held), model.predict_proba(held)))
    return monitors, fresh, y_fresh, model


def window(monitors: Monitors, frame: pd.DataFrame, truths: np.ndarray, model: Any) -> Window:
    predictions = model.predict(frame)
    _, scored = row_outcomes(predictions.tolist(), truths.tolist())
    return Window(frame, predictions, monitors.outlier_scores(frame), truths=truths,
                  outcomes=np.asarray(scored), probabilities=model.predict_proba(frame))


def test_relabelled_class_flags_the_overall_verdict(labelled: Any) -> None:
    monitors, fresh, truths, model = labelled
    relabelled = np.where(truths == 1, 0, truths)
    results = monitors.test(window(monitors, fresh, relabelled, model), alpha=0.01)
    assert results["labels"].is_drift and results["performance"].is_drift
    assert results["overall"].is_drift


def test_clean_feedback_does_not_flag(labelled: Any) -> None:
    monitors, fresh, truths, model = labelled
    results = monitors.test(window(monitors, fresh, truths, model), alpha=0.01)
    assert not results["overall"].is_drift


def test_too_little_feedback_is_not_tested(labelled: Any) -> None:
    monitors, fresh, truths, model = labelled
    few = window(monitors, fresh, truths, model)
    few = Window(few.frame, few.predictions, few.outlier_scores, truths=truths[:5],
                 outcomes=few.outcomes[:5])
    assert {"labels", "performance"}.isdisjoint(monitors.test(few, alpha=0.01))


def feedback_row(request_id: str, **values: Any) -> dict[str, Any]:
    return {"request_id": request_id, "model_name": "digits", "model_version": "3",
            "truth": None, "reward": None, "is_correct": None, "abs_error": None,
            "received_at": utc_now(), **values}


def test_accuracy_counts_rows_not_requests(payload_store: PayloadStore) -> None:
    payload_store.save_feedback(feedback_row(
        "forty", truth=[1] * 40, is_correct=False, rows=40, correct_rows=38,
        outcomes=[1.0] * 38 + [0.0] * 2), replace=False)
    payload_store.save_feedback(feedback_row("old", truth=1, is_correct=True), replace=False)
    [summary] = payload_store.summaries()
    assert summary.accuracy == pytest.approx(39 / 41)  # an older feedback counts as one row
    recent = payload_store.recent_feedback("digits", "3", 10)
    assert len(recent.truths) == len(recent.outcomes) == 41
    assert sum(recent.outcomes) == 39


def test_store_made_before_row_counts_gets_the_columns(tmp_path: Any) -> None:
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(uri).begin() as connection:  # gb_feedback as it first shipped
        connection.execute(text(
            "CREATE TABLE gb_feedback (request_id VARCHAR(128) PRIMARY KEY, model_name "
            "VARCHAR(100) NOT NULL, model_version VARCHAR(20), truth JSON, reward FLOAT, "
            "is_correct BOOLEAN, abs_error FLOAT, received_at DATETIME NOT NULL)"))
    store = PayloadStore(uri)
    try:
        request_id = uuid.uuid4().hex
        store.save_feedback(feedback_row(request_id, truth=[2, 2], is_correct=False, rows=2,
                                         correct_rows=1, outcomes=[1.0, 0.0]), replace=False)
        assert store.summaries()[0].accuracy == 0.5
    finally:
        store.close()


def _shares(first: int, second: int) -> np.ndarray:
    return np.array([0] * first + [1] * second)


def test_reference_targets_join_the_held_out_truths_in_the_label_test() -> None:
    """A prior shift of 20 points (63 → 83 % of class 0) in 100 labelled rows: within chance
    against 60 held-out truths, clear against them and 400 reference targets."""
    frame = pd.DataFrame({"a": np.linspace(0.0, 1.0, 400)})
    held = HeldOut(_shares(38, 22), _shares(38, 22))
    truths = _shares(83, 17)
    window = Window(frame[::4], _shares(63, 37), truths=truths, outcomes=np.ones(100))
    held_only = fit(frame, np.zeros(400), held_out=held, with_mmd=False)
    both = fit(frame, np.zeros(400), held_out=held, reference_truths=_shares(252, 148),
               with_mmd=False)
    assert not held_only.test(window, 0.01)["overall"].is_drift
    found = both.test(window, 0.01)
    assert found["labels"].p_value < 0.001 and found["overall"].is_drift


def test_reference_targets_alone_give_label_drift_and_drop_missing_truths() -> None:
    frame = pd.DataFrame({"a": np.linspace(0.0, 1.0, 50)})
    truths = np.array([1.5, np.nan] * 25)
    monitors = fit(frame, np.zeros(50), reference_truths=truths, with_mmd=False)
    assert monitors.performance is None and monitors.labels is not None
    assert monitors.labels.values is not None and monitors.labels.values.tolist() == [1.5] * 25


def test_reference_targets_of_another_kind_than_the_held_out_ones_refused() -> None:
    frame = pd.DataFrame({"a": np.linspace(0.0, 1.0, 50)})
    with pytest.raises(InvalidInput, match="one kind") as refused:
        fit(frame, np.zeros(50), held_out=HeldOut(np.zeros(10), np.zeros(10)),
            reference_truths=np.array(["cat", "dog"] * 25), with_mmd=False)
    assert refused.value.field == "reference_targets"
