"""SHAP's additivity and null-feature properties, per default explainer, in its output space."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from greenbutton.explain.estimators import find_estimator
from greenbutton.explain.explainers import Explainer, build_default

pytest.importorskip("shap", reason="explanations need the greenbutton[explain] extra")

EXACT = 1e-6
"""Tree and linear explainers: attributions + base value == output within this."""
SAMPLED = 1e-6
"""Permutation explainer: its attributions are sampled, but every permutation telescopes
from the background's mean output to the row's output, so the sum is exact up to rounding."""


class Holder:
    """A stand-in greenbutton model: an object with the estimator as an attribute."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator


def explainer_for(estimator: Any, X: pd.DataFrame, background_rows: int = 100) -> Explainer:
    found = find_estimator(Holder(estimator), X.shape[1])
    background = X.to_numpy(dtype=float)[:background_rows]
    return build_default(found, _no_pyfunc, background, [str(c) for c in X.columns],
                         max_evals=300)


def _no_pyfunc(rows: np.ndarray) -> np.ndarray:
    raise AssertionError("the estimator was found; the pyfunc is not called")


def assert_additive(
    explainer: Explainer, rows: np.ndarray, expected: np.ndarray, tol: float
) -> None:
    got = explainer.explain(rows)
    total = got.base_values + got.values.sum(axis=1)
    assert np.abs(got.outputs - expected.reshape(got.outputs.shape)).max() < 1e-9
    assert np.abs(total - got.outputs).max() < tol


def test_tree_classifier_attributions_add_up_to_probabilities(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    explainer = explainer_for(forest, X)
    assert (type(explainer).__name__, explainer.output_space) == ("TreeExplainer", "probability")
    rows = X.to_numpy()[:5]
    assert_additive(explainer, rows, forest.predict_proba(X.head(5)), EXACT)


def test_gradient_boosting_attributions_add_up_to_margin(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    binary = (y == 3).astype(int)
    boosted = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, binary)
    explainer = explainer_for(boosted, X)
    assert explainer.output_space == "margin" and explainer.output_labels == ["1"]
    assert_additive(explainer, X.to_numpy()[:5], boosted.decision_function(X.head(5)), EXACT)


def test_tree_regressor_attributions_add_up_to_prediction(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    forest = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    explainer = explainer_for(forest, X)
    assert explainer.output_labels == ["prediction"]
    assert_additive(explainer, X.to_numpy()[:5], forest.predict(X.head(5)), EXACT)


def test_scaled_linear_attributions_add_up_to_margin_in_input_space(
    digits_xy: tuple[pd.DataFrame, pd.Series], digits_pipeline: Any,
) -> None:
    X, _ = digits_xy
    explainer = explainer_for(digits_pipeline, X)
    assert (type(explainer).__name__, explainer.output_space) == ("LinearExplainer", "margin")
    margin = digits_pipeline.decision_function(X.head(5))
    assert_additive(explainer, X.to_numpy()[:5], margin, EXACT)


def test_linear_regressor_attributions_add_up_to_prediction(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    ridge = Ridge().fit(X, y)
    explainer = explainer_for(ridge, X)
    assert explainer.output_space == "prediction"
    assert_additive(explainer, X.to_numpy()[:5], ridge.predict(X.head(5)), EXACT)


def test_black_box_pipeline_attributions_add_up_within_stated_tolerance(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    half = [f"pixel_{i}" for i in range(32)]
    model = make_pipeline(
        ColumnTransformer([("upper", StandardScaler(), half)]), LogisticRegression(max_iter=500)
    ).fit(X, y)
    explainer = explainer_for(model, X, background_rows=30)
    assert (type(explainer).__name__, explainer.output_space) == (
        "PermutationExplainer", "probability")
    got = explainer.explain(X.to_numpy()[:2])
    total = got.base_values + got.values.sum(axis=1)
    assert np.abs(got.outputs - model.predict_proba(X.head(2))).max() < 1e-9
    assert np.abs(total - got.outputs).max() < SAMPLED
    # the lower half of the image never reaches the classifier: exactly no attribution
    assert np.abs(got.values[:, 32:, :]).max() == 0.0


def test_tree_gives_ignored_feature_zero_attribution(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    train = X.assign(pixel_10=0.0)  # constant in training: no tree can split on it
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(train, y)
    rows = X.to_numpy()[:20]
    assert rows[:, 10].std() > 0  # ... but it varies in the explained rows
    values = explainer_for(forest, train).explain(rows).values
    assert np.abs(values[:, 10, :]).max() < 1e-12
    assert np.abs(values).max() > 0.01


def test_linear_gives_ignored_feature_zero_attribution(
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = digits_xy
    train = X.assign(pixel_10=5.0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train, y)
    assert np.all(model[-1].coef_[:, 10] == 0.0)  # the premise: the model ignores it
    values = explainer_for(model, train).explain(X.to_numpy()[:20]).values
    assert np.abs(values[:, 10, :]).max() < 1e-12
    assert np.abs(values).max() > 0.01
