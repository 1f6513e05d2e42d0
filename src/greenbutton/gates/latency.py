"""``LatencyBudgetGate``: p95 of ``predict`` on a reference batch stays within a budget."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import GateOutcome, LoadedVersion
from .spec import LatencyGateSpec

_WARMUP_CALLS = 3


class LatencyBudgetGate:
    """Times ``calls`` predictions of ``rows`` reference rows after a short warm-up."""

    name = "latency"

    def __init__(self, spec: LatencyGateSpec) -> None:
        self.spec = spec

    def evaluate(self, version: LoadedVersion) -> GateOutcome:
        """Measure p95 in milliseconds (the worker process runs nothing else meanwhile)."""
        batch = version.reference.head(self.spec.rows)
        for _ in range(_WARMUP_CALLS):
            version.pyfunc.predict(batch)
        timings_ms = []
        for _ in range(self.spec.calls):
            started = time.perf_counter()
            version.pyfunc.predict(batch)
            timings_ms.append((time.perf_counter() - started) * 1000)
        p95 = float(np.percentile(timings_ms, 95))
        detail: dict[str, Any] = {"p95_ms": round(p95, 3), "budget_ms": self.spec.p95_ms,
                  "rows": len(batch), "calls": self.spec.calls}
        if p95 > self.spec.p95_ms:
            detail["reason"] = f"p95 {p95:.1f} ms exceeds the {self.spec.p95_ms} ms budget"
        return GateOutcome(self.name, p95 <= self.spec.p95_ms, detail)
