"""What a data scientist declares at ``log_model`` time: gate specs and the held-out data.

Specs are stored as JSON in the model version's ``greenbutton.gates`` tag; the held-out data
is a Parquet artifact of the logged model (features plus a ``__target__`` column).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ..errors import InvalidInput

GATES_TAG = "greenbutton.gates"
CONFORMANCE_TAG = "greenbutton.conformance"
"""Set by ``log_model`` once the model passed the contract and predicted on its reference
rows: ``{"rows": N, "model_tests": [...]}`` (the ``@model_test`` methods it declares)."""
HELD_OUT_ARTIFACT = "greenbutton_held_out"
TARGET_COLUMN = "__target__"

LOWER_IS_BETTER = frozenset({"rmse", "mae"})
METRICS = ("accuracy", "f1_macro", "rmse", "mae", "r2")


class MetricGateSpec(BaseModel):
    """``metric`` on the held-out data must be ≥ ``min`` (or ≤ ``max`` for errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["metric"] = "metric"
    metric: Literal["accuracy", "f1_macro", "rmse", "mae", "r2"]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self


class LatencyGateSpec(BaseModel):
    """p95 of ``predict`` on ``rows`` reference rows, over ``calls`` calls, ≤ ``p95_ms``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["latency"] = "latency"
    p95_ms: PositiveFloat
    rows: PositiveInt = 1
    calls: Annotated[int, Field(ge=5, le=10_000)] = 50


GateSpec = Annotated[MetricGateSpec | LatencyGateSpec, Field(discriminator="kind")]
_SPECS: TypeAdapter[list[GateSpec]] = TypeAdapter(list[GateSpec])


def parse_gates(value: Any) -> list[MetricGateSpec | LatencyGateSpec]:
    """Validated specs from a list of dicts/specs or the tag's JSON text (422 otherwise)."""
    try:
        if isinstance(value, str):
            return _SPECS.validate_json(value)
        plain = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        return _SPECS.validate_python(plain)
    except ValidationError as error:
        raise InvalidInput(f"invalid gates: {error.errors()[0]['msg']}", field="gates") from None


def gates_tag(specs: list[MetricGateSpec | LatencyGateSpec]) -> str:
    """The tag value that stores ``specs``."""
    return json.dumps([s.model_dump() for s in specs], separators=(",", ":"))


def write_held_out(features: Any, target: Any, folder: Path) -> str:
    """Write held-out features and target as one Parquet file; returns its path."""
    import pandas as pd

    frame = pd.DataFrame(features).reset_index(drop=True)
    if TARGET_COLUMN in frame.columns:
        raise InvalidInput(f"column {TARGET_COLUMN!r} is reserved", field="held_out")
    labels = pd.Series(target).reset_index(drop=True)
    if len(labels) != len(frame) or len(frame) == 0:
        raise InvalidInput("held_out needs as many (≥ 1) targets as rows", field="held_out")
    frame[TARGET_COLUMN] = labels
    path = folder / "held_out.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def prepare(held_out: tuple[Any, Any] | None, gates: Any, folder: Path) -> tuple[
        dict[str, str], str | None]:
    """For ``log_model``: the extra artifacts and the gates tag value (or ``None``)."""
    specs = parse_gates(gates or [])
    needs_data = any(isinstance(s, MetricGateSpec) for s in specs)
    if needs_data and held_out is None:
        raise InvalidInput("a metric gate needs held_out=(X, y)", field="held_out")
    artifacts = {}
    if held_out is not None:
        artifacts[HELD_OUT_ARTIFACT] = write_held_out(held_out[0], held_out[1], folder)
    return artifacts, (gates_tag(specs) if specs else None)
