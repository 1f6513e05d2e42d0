"""What the registry returns: plain frozen records read from MLflow and greenbutton's store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..store.protocol import Stage


@dataclass(frozen=True)
class ModelSummary:
    """One registered model with the versions in each lifecycle stage."""

    name: str
    latest_version: int | None
    description: str | None
    production: int | None = None
    staging: int | None = None
    archived: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionInfo:
    """One model version: MLflow's record plus its greenbutton lifecycle stage."""

    name: str
    version: int
    run_id: str | None
    source: str
    created_at: datetime
    stage: Stage
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class MirrorDrift:
    """An MLflow alias that does not say what greenbutton's lifecycle says."""

    model: str
    alias: str
    mlflow_version: int | None
    lifecycle_version: int | None

    def describe(self) -> str:
        """One human-readable line."""
        where = "is not set" if self.mlflow_version is None else f"→ v{self.mlflow_version}"
        wanted = "none" if self.lifecycle_version is None else f"v{self.lifecycle_version}"
        return f"{self.model!r}: alias {self.alias!r} {where}, lifecycle says {wanted}"

    def __str__(self) -> str:
        return self.describe()
