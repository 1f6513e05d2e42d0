"""Outlier detectors and the fitted monitors: calibration, flags, save/load without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greenbutton.errors import InvalidInput
from greenbutton.monitoring.drift import Window
from greenbutton.monitoring.monitors import (
    MONITORS_ARTIFACT,
    Monitors,
    fit,
    fit_monitors,
    load_monitors,
    save,
)


def test_outlier_false_positive_rate_on_clean_rows_is_low(digits_monitors: Monitors,
                                                          digits_split: Any) -> None:
    test_rows = digits_split[2]
    assert digits_monitors.outliers is not None
    flags = digits_monitors.outlier_scores(test_rows) > digits_monitors.outliers.threshold
    assert flags.mean() <= 0.03


def test_white_and_noise_images_flagged_as_outliers(digits_monitors: Monitors) -> None:
    columns = [f"pixel_{i}" for i in range(64)]
    rng = np.random.default_rng(1)
    odd = pd.DataFrame([np.full(64, 16.0), rng.integers(0, 17, 64)], columns=columns)
    assert digits_monitors.outliers is not None
    assert (digits_monitors.outlier_scores(odd) > digits_monitors.outliers.threshold).all()


def test_a_row_alone_scores_as_it_does_among_others(digits_monitors: Monitors,
                                                    digits_split: Any) -> None:
    rows = digits_split[2][:50]
    together = digits_monitors.outlier_scores(rows)
    alone = np.array([digits_monitors.outlier_scores(rows[i:i + 1])[0] for i in range(len(rows))])
    np.testing.assert_allclose(alone, together, rtol=1e-12)


def test_a_row_with_missing_or_infinite_values_scores_as_among_others(
        digits_monitors: Monitors, digits_split: Any) -> None:
    rows = digits_split[2][:3].astype(float).reset_index(drop=True)
    rows.iloc[0, 5], rows.iloc[1, 7] = np.nan, np.inf
    together = digits_monitors.outlier_scores(rows)
    alone = [digits_monitors.outlier_scores(rows[i:i + 1])[0] for i in range(2)]
    np.testing.assert_allclose(alone, together[:2], rtol=1e-12)
    assert np.isfinite(together[0]) and together[1] > digits_monitors.outliers.threshold


def test_one_row_annotation_rounds_as_numpy_does(digits_monitors: Monitors) -> None:
    from prometheus_client import CollectorRegistry

    from greenbutton.monitoring.gauges import MonitoringGauges
    from greenbutton.monitoring.runtime import OutlierAnnotator

    annotator = OutlierAnnotator(digits_monitors, MonitoringGauges(CollectorRegistry()),
                                 ("m", "1"))
    rng = np.random.default_rng(3)
    columns = [f"pixel_{i}" for i in range(64)]
    for _ in range(200):
        row = pd.DataFrame([rng.integers(0, 17, 64).astype(float)], columns=columns)
        [value] = annotator.annotate(row, None)
        score = digits_monitors.outlier_scores(row)
        assert value["score"] == score.round(4).item()
        assert value["is_outlier"] == bool(score[0] > annotator.threshold)


def test_annotation_from_the_requests_array_equals_the_one_from_its_frame(
        digits_monitors: Monitors) -> None:
    from prometheus_client import CollectorRegistry

    from greenbutton.monitoring.gauges import MonitoringGauges
    from greenbutton.monitoring.runtime import OutlierAnnotator

    annotator = OutlierAnnotator(digits_monitors, MonitoringGauges(CollectorRegistry()),
                                 ("m", "1"))
    rng = np.random.default_rng(4)
    columns = [f"pixel_{i}" for i in range(64)]
    for rows in (1, 1, 5):
        matrix = rng.integers(0, 17, (rows, 64))  # integers: converted to floats
        frame = pd.DataFrame(matrix.astype(float), columns=columns)
        assert annotator.annotate_with_values(frame, matrix, None) == \
            annotator.annotate(frame, None)
    # a frame with other columns than the detector's: its array is not used as it is
    shuffled = frame[columns[::-1]]
    assert annotator.annotate_with_values(shuffled, shuffled.to_numpy(), None) == \
        annotator.annotate(frame, None)


def test_saved_monitors_load_with_same_answers_and_no_pickles(
        tmp_path: Path, digits_monitors: Monitors, digits_split: Any, classifier: Any) -> None:
    test = digits_split[2]
    save(digits_monitors, tmp_path)
    loaded = load_monitors(tmp_path)
    np.testing.assert_allclose(loaded.outlier_scores(test), digits_monitors.outlier_scores(test))
    window = Window(test[:100], classifier.predict(test[:100]), loaded.outlier_scores(test[:100]))
    assert {k: v.p_value for k, v in loaded.test(window, 0.01).items()} == pytest.approx(
        {k: v.p_value for k, v in digits_monitors.test(window, 0.01).items()})
    for path in tmp_path.glob("*.npz"):
        with np.load(path, allow_pickle=False) as stored:
            assert all(stored[key].dtype != object for key in stored.files)


def test_isolation_forest_option_flags_white_image(digits_split: Any, classifier: Any,
                                                   tmp_path: Path) -> None:
    train = digits_split[0]
    artifacts = fit_monitors(train, classifier.predict(train), tmp_path,
                             outlier_kind="isolation_forest", with_mmd=False)
    monitors = load_monitors(Path(artifacts[MONITORS_ARTIFACT]))
    white = pd.DataFrame([np.full(64, 16.0)], columns=train.columns)
    assert monitors.outliers is not None
    assert monitors.outlier_scores(white)[0] > monitors.outliers.threshold


def test_unknown_outlier_kind_refused(digits_split: Any) -> None:
    with pytest.raises(InvalidInput):
        fit(digits_split[0], np.zeros(len(digits_split[0])), outlier_kind="crystal_ball")


def test_clean_digits_window_not_drifted_inverted_window_drifted(
        digits_monitors: Monitors, digits_split: Any, classifier: Any) -> None:
    test = digits_split[2].iloc[:100]
    clean = Window(test, classifier.predict(test), digits_monitors.outlier_scores(test))
    inverted = 16 - test
    bad = Window(inverted, classifier.predict(inverted), digits_monitors.outlier_scores(inverted))
    assert not digits_monitors.test(clean, 0.01)["overall"].is_drift
    assert digits_monitors.test(bad, 0.01)["overall"].is_drift


def test_feature_squeezing_flags_prediction_that_moves(digits_monitors: Monitors,
                                                       digits_split: Any, classifier: Any) -> None:
    detector = digits_monitors.adversarial
    assert detector is not None
    detector.predict = classifier.predict
    rows = digits_split[2].iloc[:50]
    values = detector.annotate(rows, classifier.predict(rows))
    assert len(values) == 50 and all(set(v) == {"is_adversarial", "score"} for v in values)
    assert sum(v["is_adversarial"] for v in values) < 25  # most clean digits survive squeezing
