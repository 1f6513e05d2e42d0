"""What every gate receives (the loaded version) and returns (a ``GateOutcome``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..store.governance_records import GateOutcome

__all__ = ["Gate", "GateOutcome", "LoadedVersion"]


@dataclass(frozen=True)
class LoadedVersion:
    """A model version loaded in the gate worker, with the data logged alongside it."""

    model_uri: str
    pyfunc: Any
    """``mlflow.pyfunc.PyFuncModel``"""
    python_model: Any
    """The user's ``greenbutton.Model`` instance (``load_context`` has run)."""
    context: Any
    """The ``PythonModelContext`` its ``load_context`` got."""
    reference: Any
    """Reference sample (``pandas.DataFrame``)."""
    held_out: Any | None
    """Held-out features plus ``__target__`` (``pandas.DataFrame``), if logged."""


class Gate(Protocol):
    """A promotion check. ``name`` is stored with each outcome.

    Example::

        class AlwaysGate:
            name = "always"
            def evaluate(self, version):
                return GateOutcome(self.name, True, {})
    """

    name: str

    def evaluate(self, version: LoadedVersion) -> GateOutcome:
        """The verdict; put a human-readable ``reason`` in ``detail`` when failing."""
        ...
