"""``ConformanceGate``: the logged model satisfies greenbutton's model contract."""

from __future__ import annotations

from ..conformance import check_logged_metadata
from .base import GateOutcome, LoadedVersion

_SAMPLE_ROWS = 20


class ConformanceGate:
    """Signature, input example and pyfunc flavor logged; ``predict`` through MLflow answers
    one prediction per reference row.

    The class itself was checked by ``log_model``; after unpickling, its greenbutton base
    class is a by-value copy, so ``issubclass`` checks would not mean anything here.
    """

    name = "conformance"

    def evaluate(self, version: LoadedVersion) -> GateOutcome:
        """Check the logged model's metadata, then a sample prediction."""
        from mlflow.models import Model as MLmodel

        metadata = MLmodel.load(version.model_uri)
        problems = [str(p) for p in check_logged_metadata(metadata, version.model_uri)]
        sample = version.reference.head(_SAMPLE_ROWS)
        predictions = version.pyfunc.predict(sample)
        if len(predictions) != len(sample):
            problems.append(f"predict returned {len(predictions)} predictions for "
                            f"{len(sample)} rows")
        if problems:
            return GateOutcome(self.name, False, {"reason": "; ".join(problems)})
        return GateOutcome(self.name, True, {"rows": len(sample)})
