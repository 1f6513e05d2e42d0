"""Find the scikit-learn estimator inside a greenbutton model and decide how to explain it.

The model is found by attribute, never by ``isinstance`` on greenbutton classes (the logged
model carries its own copy of ``greenbutton.model``): the class may name the attribute that
holds the estimator with ``explain_estimator = "pipeline"``; otherwise the instance's
attributes are scanned for exactly one fitted scikit-learn estimator.

A :class:`~sklearn.pipeline.Pipeline` is split into its preprocessing and its final step when
every preprocessing step transforms column by column (scalers and the like). For such steps,
explaining the final step on transformed rows against a transformed background gives exactly
the interventional SHAP values of the whole pipeline in input space: with an independent
masker, replacing feature *i* by a background value commutes with a column-wise transform,
and feature *i* of the output depends on input feature *i* only. Any other preprocessing
(PCA, one-hot encoding, column transformers) makes the pipeline a black box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

ModelKind = Literal["tree", "linear", "model"]

COLUMN_WISE_STEPS: tuple[type, ...] = (
    StandardScaler,
    MinMaxScaler,
    MaxAbsScaler,
    RobustScaler,
    PowerTransformer,
    QuantileTransformer,
)
"""Transformers whose output column *i* depends on input column *i* only."""
TREE_MODELS: tuple[type, ...] = (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
)
"""Models shap's TreeExplainer reads exactly (others go to the model-agnostic explainer)."""


@dataclass(frozen=True)
class FoundEstimator:
    """The estimator to explain, the column-wise preprocessing in front of it, and its kind."""

    estimator: Any
    preprocess: Any | None
    kind: ModelKind
    whole: Any
    """What the model's ``predict`` calls: the estimator or the whole pipeline."""

    def transform(self, rows: np.ndarray, columns: list[str]) -> Any:
        """``rows`` as the explained estimator sees them (preprocessed when there is a step)."""
        if self.preprocess is None:
            return _as_fitted(self.estimator, rows, columns)
        return np.asarray(self.preprocess.transform(_as_fitted(self.preprocess, rows, columns)))


def find_estimator(python_model: Any, n_features: int) -> FoundEstimator | None:
    """The fitted estimator inside ``python_model`` that takes ``n_features`` columns, or None."""
    candidate = _declared_or_scanned(python_model)
    if candidate is None or getattr(candidate, "n_features_in_", n_features) != n_features:
        return None
    if isinstance(candidate, Pipeline):
        steps = [step for _, step in candidate.steps[:-1] if step not in (None, "passthrough")]
        if all(isinstance(step, COLUMN_WISE_STEPS) for step in steps):
            final = candidate.steps[-1][1]
            preprocess = candidate[:-1] if steps else None
            return FoundEstimator(final, preprocess, kind_of(final), candidate)
        return FoundEstimator(candidate, None, "model", candidate)
    return FoundEstimator(candidate, None, kind_of(candidate), candidate)


def kind_of(estimator: Any) -> ModelKind:
    """``tree`` for scikit-learn's tree models, ``linear`` for its linear models, else ``model``."""
    if isinstance(estimator, TREE_MODELS):
        return "tree"
    module = type(estimator).__module__
    if module.startswith("sklearn.linear_model.") and hasattr(estimator, "intercept_"):
        return "linear"
    return "model"


def output_labels(estimator: Any, width: int) -> list[str]:
    """Names of the ``width`` explained outputs: class labels, or ``prediction``."""
    classes = getattr(estimator, "classes_", None)
    if is_classifier(estimator) and classes is not None:
        labels = [str(c) for c in classes]
        return labels[-width:]  # a binary margin explains the positive class only
    return ["prediction"] if width == 1 else [f"output_{i}" for i in range(width)]


def _declared_or_scanned(python_model: Any) -> Any | None:
    if _is_fitted_estimator(python_model):  # a model logged with MLflow's sklearn flavour
        return python_model
    declared = getattr(type(python_model), "explain_estimator", None)
    if isinstance(declared, str) and declared:
        found = getattr(python_model, declared, None)
        return found if _is_fitted_estimator(found) else None
    fitted = [v for v in vars(python_model).values() if _is_fitted_estimator(v)] if hasattr(
        python_model, "__dict__"
    ) else []
    return fitted[0] if len(fitted) == 1 else None


def _is_fitted_estimator(value: Any) -> bool:
    if not isinstance(value, BaseEstimator) or not hasattr(value, "predict"):
        return False
    try:
        check_is_fitted(value)
    except Exception:  # NotFittedError, or a Pipeline step that check_is_fitted cannot read
        return False
    return True


def _as_fitted(estimator: Any, rows: np.ndarray, columns: list[str]) -> Any:
    # estimators fitted on a DataFrame warn when given bare arrays; give them their names back
    if getattr(estimator, "feature_names_in_", None) is None:
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)
