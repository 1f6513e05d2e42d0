"""The default explainers, one per model kind, each a thin adapter over a SHAP explainer.

Every explainer returns :class:`Attributions` in one *output space*, the space in which
``base_value + sum(attributions) == value`` holds for each row and output:

- ``TreeExplainer`` (SHAP's, path-dependent): class probabilities for decision trees,
  random forests and extra trees; the margin (log-odds, ``decision_function``) for gradient
  boosting classifiers; the prediction for regressors. Exact (to float rounding).
- ``LinearExplainer`` (SHAP's, independent masker over the background): the margin
  (``decision_function``) for classifiers, ``X @ coef + intercept`` for regressors (the
  prediction, except for GLMs, whose ``predict`` also applies the inverse link). Exact.
- ``PermutationExplainer`` (SHAP's, model-agnostic): class probabilities when the estimator
  has ``predict_proba``, else the numeric prediction. Attributions are sampled estimates, but
  each permutation telescopes from the background's mean output to the row's output, so
  additivity holds to float rounding; the base value is the mean output over the background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

from .estimators import FoundEstimator, ModelKind, output_labels

OutputFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Attributions:
    """Per row, feature and output: attributions; per row and output: base value and value."""

    values: np.ndarray
    """Shape (rows, features, outputs)."""
    base_values: np.ndarray
    """Shape (rows, outputs)."""
    outputs: np.ndarray
    """The explained output itself, shape (rows, outputs)."""


class Explainer(Protocol):
    """Explains rows of a model's input in one output space.

    ``explainer.explain(rows).values[r, f, o]`` is feature ``f``'s share of output ``o`` of
    row ``r``, with ``base_values[r, o] + values[r, :, o].sum() == outputs[r, o]``.
    """

    name: ClassVar[str]
    output_space: str
    output_labels: list[str]

    def explain(self, rows: np.ndarray) -> Attributions:
        """Attributions for ``rows`` (a 2-D float array in the model's column order)."""
        ...


class TreeExplainer:
    """SHAP's exact tree explainer on the tree model inside the greenbutton model."""

    name: ClassVar[str] = "TreeExplainer"

    def __init__(self, found: FoundEstimator, background: np.ndarray, columns: list[str]) -> None:
        import shap

        self._found, self._columns = found, columns
        self._shap = shap.TreeExplainer(found.estimator)
        estimator = found.estimator
        if not is_classifier(estimator):
            self.output_space, self._output = "prediction", estimator.predict
        elif hasattr(estimator, "decision_function"):  # gradient boosting: raw = log-odds
            self.output_space, self._output = "margin", estimator.decision_function
        else:
            self.output_space, self._output = "probability", estimator.predict_proba
        self.output_labels = output_labels(estimator, _width(self._shap.expected_value))

    def explain(self, rows: np.ndarray) -> Attributions:
        """Exact SHAP values of the tree model for ``rows``."""
        features = self._found.transform(rows, self._columns)
        values = self._shap.shap_values(features, check_additivity=False)
        return _attributions(values, self._shap.expected_value, self._output(features))


class LinearExplainer:
    """SHAP's linear explainer, with column-wise preprocessing applied to the background."""

    name: ClassVar[str] = "LinearExplainer"

    def __init__(self, found: FoundEstimator, background: np.ndarray, columns: list[str]) -> None:
        import shap

        self._found, self._columns = found, columns
        estimator = found.estimator
        transformed = np.asarray(found.transform(background, columns), dtype=float)
        masker = shap.maskers.Independent(transformed, max_samples=len(transformed))
        self._shap = shap.LinearExplainer(estimator, masker)
        self.output_space = "margin" if _is_margin(estimator) else "prediction"
        self.output_labels = output_labels(estimator, _width(self._shap.expected_value))

    def explain(self, rows: np.ndarray) -> Attributions:
        """Exact interventional SHAP values of the linear model for ``rows``."""
        features = np.asarray(self._found.transform(rows, self._columns), dtype=float)
        values = self._shap.shap_values(features)
        estimator = self._found.estimator
        coef = np.atleast_2d(estimator.coef_)
        margin = features @ coef.T + np.asarray(estimator.intercept_)
        return _attributions(values, self._shap.expected_value, margin)


class PermutationExplainer:
    """SHAP's permutation explainer on any numeric output, over a background sample."""

    name: ClassVar[str] = "PermutationExplainer"

    def __init__(
        self,
        output: OutputFunction,
        output_space: str,
        labels: list[str],
        background: np.ndarray,
        *,
        max_evals: int,
    ) -> None:
        import shap

        self._output = output
        self.output_space, self.output_labels = output_space, labels
        self._max_evals = max(max_evals, 2 * background.shape[1] + 1)
        masker = shap.maskers.Independent(background, max_samples=len(background))
        self._shap = shap.PermutationExplainer(output, masker, seed=0)

    def explain(self, rows: np.ndarray) -> Attributions:
        """Sampled SHAP values for ``rows``; additivity is exact by construction."""
        explanation = self._shap(rows, max_evals=self._max_evals, silent=True)
        return _attributions(explanation.values, explanation.base_values, self._output(rows))


def build_default(
    found: FoundEstimator | None,
    predict: OutputFunction,
    background: np.ndarray,
    columns: list[str],
    *,
    max_evals: int,
) -> Explainer:
    """The explainer for the model's kind: EXPLAINERS[kind], or the model-agnostic one."""
    if found is not None and found.kind != "model":
        return EXPLAINERS[found.kind](found, background, columns)
    if found is None:
        width = _width(predict(background[:1]))
        labels = ["prediction"] if width == 1 else [f"output_{i}" for i in range(width)]
        return PermutationExplainer(
            predict, "prediction", labels, background, max_evals=max_evals
        )
    whole = found.whole
    has_proba = is_classifier(whole) and hasattr(whole, "predict_proba")
    method = whole.predict_proba if has_proba else whole.predict

    def output(rows: np.ndarray) -> np.ndarray:
        named = pd.DataFrame(rows, columns=columns) if hasattr(whole, "feature_names_in_") else rows
        return np.asarray(method(named), dtype=float)

    width = _width(output(background[:1]))
    return PermutationExplainer(
        output,
        "probability" if has_proba else "prediction",
        output_labels(whole, width),
        background,
        max_evals=max_evals,
    )


EXPLAINERS: dict[ModelKind, Callable[[FoundEstimator, np.ndarray, list[str]], Explainer]] = {
    "tree": TreeExplainer,
    "linear": LinearExplainer,
}
"""Exact explainers by model kind; every other model gets a :class:`PermutationExplainer`."""


def _is_margin(estimator: Any) -> bool:
    return is_classifier(estimator) or type(estimator).__module__.endswith("._glm.glm")


def _width(values: Any) -> int:
    array = np.asarray(values)
    return 1 if array.ndim == 0 else int(array.shape[-1]) if array.ndim == 2 else len(array)


def _attributions(values: Any, base_values: Any, outputs: Any) -> Attributions:
    values = np.asarray(values, dtype=float)
    if values.ndim == 2:
        values = values[:, :, None]
    rows, _, width = values.shape
    base = np.asarray(base_values, dtype=float)
    base = base.reshape(-1, 1) if width == 1 else base.reshape(-1, width)
    out = np.asarray(outputs, dtype=float).reshape(rows, -1)
    return Attributions(values, np.broadcast_to(base, (rows, width)).copy(), out)
