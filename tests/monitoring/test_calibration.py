"""Calibrated detectors: clean windows flagged at most at the nominal rate, contamination found."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

from greenbutton.monitoring.contamination import OutlierScoreDriftDetector
from greenbutton.monitoring.drift import Window
from greenbutton.monitoring.mmd import MMDDetector
from greenbutton.monitoring.monitors import fit_outliers
from greenbutton.monitoring.outliers import MahalanobisDetector

COLUMNS = [f"f{i}" for i in range(8)]


def population(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Correlated Gaussians, one of them skewed."""
    latent = rng.normal(size=(rows, 2))
    values = latent @ np.random.default_rng(99).normal(size=(2, 8)) + rng.normal(size=(rows, 8))
    values[:, 0] = np.exp(values[:, 0] / 2)
    return pd.DataFrame(values, columns=COLUMNS)


def test_cross_fitted_outlier_threshold_flags_about_the_target_share() -> None:
    """300 reference rows, 1 % target: out-of-sample scores of all 300 place the threshold;
    fresh rows are flagged at 1 % ± sampling (over 10 references, 20,000 rows: 0.4-2 %)."""
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(10):
        detector, _ = fit_outliers(MahalanobisDetector, population(rng, 300), 0.01)
        shares.append(np.mean(detector.score(population(rng, 2000)) > detector.threshold))
    assert 0.004 <= np.mean(shares) <= 0.02


def test_cross_fitted_threshold_on_a_small_real_table_flags_at_most_its_share() -> None:
    """Random halves of scikit-learn's diabetes table (442 rows, nearly collinear serum
    columns): the threshold is the second largest of 221 out-of-sample scores, so if those
    are exchangeable with new rows' scores, a row of the other half is above it at most
    2/222 = 0.9 % of the time over the halves. These 120 halves: 0.7 %; with a shrinkage
    amount chosen per fold (the folds' estimates shrunk more than the final one), 1.0 %."""
    table = load_diabetes(as_frame=True).data
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(120):
        order = rng.permutation(len(table))
        detector, _ = fit_outliers(MahalanobisDetector, table.iloc[order[:221]], 0.01)
        shares.append(np.mean(detector.score(table.iloc[order[221:]]) > detector.threshold))
    assert np.mean(shares) <= 2 / 222


def contamination(rows: int, rng: np.random.Generator) -> tuple[OutlierScoreDriftDetector,
                                                                 MahalanobisDetector]:
    detector, calibration = fit_outliers(MahalanobisDetector, population(rng, rows), 0.01)
    return OutlierScoreDriftDetector(calibration, detector.threshold), detector


def test_five_gross_outliers_in_a_window_of_100_flag_it() -> None:
    rng = np.random.default_rng(1)
    drift, scorer = contamination(600, rng)
    window = population(rng, 100)
    window.iloc[:5, [1, 4, 6]] = 40.0  # three features far beyond anything in the reference
    result = drift.test(Window(window, np.empty(0), scorer.score(window)), alpha=0.01 / 7)
    assert result.is_drift and result.features["tail"].is_drift


def test_clean_windows_rarely_flag_contamination() -> None:
    """100 clean windows at alpha 0.05 against one reference: the tests are exact given the
    reference is exchangeable with them, so about 5 % (here at most 5 % + 3 sd = 12)."""
    rng = np.random.default_rng(2)
    drift, scorer = contamination(600, rng)
    flagged = 0
    for _ in range(100):
        window = population(rng, 100)
        flagged += drift.test(Window(window, np.empty(0), scorer.score(window)), 0.05).is_drift
    assert flagged <= 12


def test_mmd_clean_windows_against_one_reference_flagged_at_about_alpha() -> None:
    """One reference of 2,000 rows, 150 clean windows at alpha 0.05, each compared with its
    own fresh sample of the reference: at most 5 % plus 3 binomial sd."""
    rng = np.random.default_rng(3)
    detector = MMDDetector.fit(population(rng, 2000))
    flagged = sum(detector.test(Window(population(rng, 100), np.empty(0)), 0.05).is_drift
                  for _ in range(150))
    assert flagged <= 7.5 + 3 * np.sqrt(150 * 0.05 * 0.95)


def test_mmd_shift_of_all_features_flagged() -> None:
    rng = np.random.default_rng(4)
    detector = MMDDetector.fit(population(rng, 1000))
    shifted = population(rng, 100) + 0.5
    assert detector.test(Window(shifted, np.empty(0)), alpha=0.001).is_drift


def test_mmd_treats_missing_values_as_the_mean() -> None:
    rng = np.random.default_rng(5)
    reference = population(rng, 1000)
    detector = MMDDetector.fit(reference)
    window = population(rng, 100)
    window.iloc[:10, 2] = np.nan  # as 0 they would sit 0 raw units away, not at the mean
    result = detector.test(Window(window, np.empty(0)), alpha=0.01)
    assert not result.is_drift
