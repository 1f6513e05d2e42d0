"""Explanations for every served model: SHAP by model kind, or the model's own ``explain()``.

Needs the optional extra ``greenbutton[explain]`` (SHAP); it is imported only when an
explainer is first built. The names below are imported on first use (PEP 562), so a serving
process that never explains does not pay for importing scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "EXPLAINERS": "explainers", "Attributions": "explainers", "Explainer": "explainers",
    "Explained": "explanation", "ExplainedModel": "explanation",
    "ExplainMetrics": "service", "ExplainService": "service",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
