"""Data quality per column: missing values, types, ranges and unseen categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from greenbutton.monitoring.columns import categorical_columns
from greenbutton.monitoring.counts import excess_p, tarone_count
from greenbutton.monitoring.drift import Window
from greenbutton.monitoring.quality import DataQualityDetector


def table(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Numbers, counts, integer codes (0, 1, 3, 4: no 2) and a string category."""
    return pd.DataFrame({
        "x": rng.normal(size=rows),
        "visits": rng.poisson(20, rows).astype(np.int64),
        "code": rng.choice([0, 1, 3, 4], rows).astype(np.int64),
        "colour": rng.choice(["red", "green", "blue"], rows),
    })


@pytest.fixture(scope="module")
def detector() -> DataQualityDetector:
    return DataQualityDetector.fit(table(np.random.default_rng(0), 1000))


def check(detector: DataQualityDetector, frame: pd.DataFrame, column: str, name: str) -> bool:
    result = detector.test(Window(frame, np.empty(0)), alpha=0.01)
    return result.is_drift and result.features[column].features[name].is_drift


def test_integer_codes_and_strings_inferred_categorical() -> None:
    assert categorical_columns(table(np.random.default_rng(1), 500)) == ["code", "colour"]


def test_clean_window_not_flagged(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(2), 100)
    assert not detector.test(Window(window, np.empty(0)), alpha=0.01).is_drift


def test_all_missing_column_flagged(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(3), 100)
    window["x"] = np.nan
    assert check(detector, window, "x", "missing")


def test_missing_rate_like_the_reference_not_flagged() -> None:
    rng = np.random.default_rng(4)
    reference, window = table(rng, 1000), table(rng, 100)
    reference.loc[rng.random(1000) < 0.05, "x"] = np.nan
    window.loc[:4, "x"] = np.nan  # 5 %, as in the reference
    result = DataQualityDetector.fit(reference).test(Window(window, np.empty(0)), alpha=0.01)
    assert not result.is_drift


def test_text_in_a_number_column_is_a_type_violation(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(5), 100).astype({"x": object})
    window.loc[:9, "x"] = "n/a"
    assert check(detector, window, "x", "type")


def test_fractions_in_an_integer_column_are_type_violations(
        detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(6), 100).astype({"visits": float})
    window.loc[:9, "visits"] = 20.5
    assert check(detector, window, "visits", "type")


def test_values_beyond_the_reference_range_flagged(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(7), 100)
    window.loc[:9, "x"] = 50.0
    assert check(detector, window, "x", "range")


def test_unseen_code_inside_the_numeric_range_flagged(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(8), 100)
    window.loc[:9, "code"] = 2  # between the codes seen: not extreme, only new
    assert check(detector, window, "code", "unseen")


def test_unseen_string_category_flagged(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(9), 100)
    window.loc[:9, "colour"] = "purple"
    assert check(detector, window, "colour", "unseen")


def test_code_read_back_as_float_is_not_unseen(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(10), 100).astype({"code": float})
    window.loc[0, "code"] = np.nan  # JSON null: pandas reads the codes back as 0.0, 1.0, …
    assert not detector.test(Window(window, np.empty(0)), alpha=0.01).is_drift


def test_absent_column_counts_as_missing(detector: DataQualityDetector) -> None:
    window = table(np.random.default_rng(11), 100).drop(columns=["colour"])
    assert check(detector, window, "colour", "missing")


def test_clean_windows_flagged_at_most_at_the_nominal_rate() -> None:
    """200 clean windows at alpha 0.05, reference with missing values and a rare category:
    the checks are exact (conservative), so at most 5 % plus 3 binomial sd (~14) windows."""
    rng = np.random.default_rng(12)

    def draw(rows: int) -> pd.DataFrame:
        frame = table(rng, rows)
        frame.loc[rng.random(rows) < 0.03, "x"] = np.nan
        frame.loc[rng.random(rows) < 0.004, "colour"] = "rare"
        return frame

    detector = DataQualityDetector.fit(draw(800))
    flagged = sum(detector.test(Window(draw(100), np.empty(0)), alpha=0.05).is_drift
                  for _ in range(200))
    assert flagged <= 10 + 3 * np.sqrt(200 * 0.05 * 0.95)


def test_excess_p_equals_fishers_one_sided_exact_test() -> None:
    rng = np.random.default_rng(13)
    for _ in range(20):
        window, reference = rng.integers(0, 15, 2)
        p_values, _ = excess_p(np.array([window]), np.array([100]), np.array([reference]),
                               np.array([400]))
        expected = stats.fisher_exact([[window, 100 - window], [reference, 400 - reference]],
                                      alternative="greater").pvalue
        assert p_values[0] == pytest.approx(expected, rel=1e-9)


def test_tarone_count_leaves_out_tests_that_could_not_reach_alpha() -> None:
    assert tarone_count(np.array([1.0, 1.0, 0.5, 1e-6]), alpha=0.01) == 1
    assert tarone_count(np.full(4, 1e-6), alpha=0.01) == 4


def test_checks_that_found_nothing_do_not_dilute_one_that_did() -> None:
    """40 columns, 120 checks: 3 missing values where 1,000 reference rows had none (exact
    p = 7e-4) are flagged, as they would be alone; a plain Bonferroni over 120 would not."""
    rng = np.random.default_rng(14)
    columns = [f"c{i}" for i in range(40)]
    detector = DataQualityDetector.fit(pd.DataFrame(rng.normal(size=(1000, 40)),
                                                    columns=columns))
    window = pd.DataFrame(rng.normal(size=(100, 40)), columns=columns)
    window.loc[:2, "c7"] = np.nan
    assert check(detector, window, "c7", "missing")


def test_numeric_column_with_a_rare_value_is_an_ordinal_scale_not_codes() -> None:
    rng = np.random.default_rng(15)
    frame = pd.DataFrame({"intensity": rng.choice([0, 1, 2, 3], 500)})
    frame.loc[0, "intensity"] = 13  # seen once: a thin tail, not a code
    assert categorical_columns(frame) == []
