"""Explanations for every served model: SHAP by model kind, or the model's own ``explain()``.

Needs the optional extra ``greenbutton[explain]`` (SHAP); it is imported only when an
explainer is first built.
"""

from __future__ import annotations

from .explainers import EXPLAINERS, Attributions, Explainer
from .explanation import Explained, ExplainedModel
from .service import ExplainMetrics, ExplainService

__all__ = [
    "EXPLAINERS",
    "Attributions",
    "Explained",
    "ExplainedModel",
    "ExplainMetrics",
    "ExplainService",
    "Explainer",
]
