"""Lifecycle of model versions over the MLflow client (stages kept in greenbutton's store)."""

from __future__ import annotations

from ..store.protocol import Stage, Transition
from .lifecycle import Registry
from .mirror import ALIASES, STAGE_TAG
from .records import MirrorDrift, ModelSummary, VersionInfo

__all__ = [
    "ALIASES",
    "STAGE_TAG",
    "MirrorDrift",
    "ModelSummary",
    "Registry",
    "Stage",
    "Transition",
    "VersionInfo",
]
