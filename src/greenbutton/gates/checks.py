"""``ModelTestsGate``: the data scientist's own checks, methods marked ``@model_test``."""

from __future__ import annotations

from typing import Any

from ..model import MODEL_TEST_MARKER
from .base import GateOutcome, LoadedVersion


def model_tests(model: Any) -> list[str]:
    """Names of the methods of ``model``'s class marked with ``@model_test``."""
    cls = type(model)
    return [name for name in sorted(dir(cls))
            if getattr(getattr(cls, name, None), MODEL_TEST_MARKER, False)]


class ModelTestsGate:
    """Calls each marked method with the model's context; raising or ``False`` fails it."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.name = f"model_test:{test}"

    def evaluate(self, version: LoadedVersion) -> GateOutcome:
        """Run the one check."""
        try:
            result = getattr(version.python_model, self.test)(version.context)
        except Exception as error:  # a failing user check, whatever it raises
            reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
            return GateOutcome(self.name, False, {"reason": reason[:2000]})
        if result is False:
            return GateOutcome(self.name, False, {"reason": "returned False"})
        return GateOutcome(self.name, True, {})
