"""greenbutton: write one Python class, press one green button, get a governed REST endpoint.

The names below are imported on first use (PEP 562), so ``import greenbutton.store`` or the
CLI does not pay for importing MLflow's model machinery it does not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conformance import ConformanceReport, Problem, check
    from .model import EndpointSpec, Model, endpoint, model_test
    from .packaging import LoggedModel, log_model

__all__ = [
    "ConformanceReport",
    "EndpointSpec",
    "LoggedModel",
    "Model",
    "Problem",
    "check",
    "endpoint",
    "log_model",
    "model_test",
]
__version__ = "0.1.0"

_HOMES = {
    "ConformanceReport": "conformance", "Problem": "conformance", "check": "conformance",
    "EndpointSpec": "model", "Model": "model", "endpoint": "model", "model_test": "model",
    "LoggedModel": "packaging", "log_model": "packaging",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'greenbutton' has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
