"""``Registry``: greenbutton's lifecycle of model versions, over the MLflow client.

MLflow owns models and versions; the stage of each version lives in greenbutton's store and
is mirrored into MLflow aliases (``production``, ``staging``) and a ``greenbutton.stage`` tag.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from ..errors import GreenbuttonError, InvalidInput, InvalidTransition, VersionNotFound
from ..store.protocol import (
    EXCLUSIVE_STAGES,
    LifecycleStore,
    Stage,
    StageChange,
    Transition,
    VersionState,
)
from ..store.schema import MAX_ID
from .catalog import latest_version, model_version, model_versions, registered_model
from .catalog import registered_models as iter_registered_models
from .mirror import ALIASES, drift_of, int_aliases, sync_model
from .records import MirrorDrift, ModelSummary, VersionInfo

logger = logging.getLogger(__name__)

_STAGE_REFS = {stage.value.lower(): stage for stage in ALIASES}
VERSION_READ_TTL_S = 2.0
"""How long a version read from MLflow answers again: one promotion (resolve, propose,
transition) reads it once. Stages never come from it (the store has them), and greenbutton's
own writes to a model (its mirror) forget the model's reads."""


class Registry:
    """Lifecycle of model versions: MLflow for what exists, the store for where it stands.

    Usage::

        registry = Registry(MlflowClient(), open_store("sqlite:///gb.db"))
        registry.transition("digits", 3, Stage.PRODUCTION, actor="alice", reason="better F1")
        registry.resolve("digits", "production")  # -> 3
    """

    def __init__(self, client: MlflowClient, store: LifecycleStore, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        self._read: dict[tuple[str, int], tuple[float, ModelVersion]] = {}

    @property
    def client(self) -> MlflowClient:
        """The MLflow client the lifecycle reads and mirrors to (runs are read through it)."""
        return self._client

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its latest version and the versions in each stage."""
        states: dict[str, list[VersionState]] = defaultdict(list)
        for state in self._store.list_states():
            states[state.model].append(state)
        return [_summary(m, states[m.name]) for m in iter_registered_models(self._client)]

    def list_versions(self, name: str) -> list[VersionInfo]:
        """Every version of a model, oldest first; ``ModelNotFound`` when absent."""
        stages = {s.version: s.stage for s in self._store.list_states(name)}
        return [
            _info(v, stages.get(int(v.version), Stage.NONE))
            for v in model_versions(self._client, name)
        ]

    def get_version(self, name: str, version: int) -> VersionInfo:
        """One version; ``ModelNotFound`` or ``VersionNotFound`` when absent."""
        return _info(self._version(name, version), self._store.stage_of(name, version))

    def _version(self, name: str, version: int) -> ModelVersion:
        """MLflow's record of a version, read at most once per ``VERSION_READ_TTL_S``."""
        now = self._clock()
        cached = self._read.get((name, version))
        if cached is not None and now - cached[0] < VERSION_READ_TTL_S:
            return cached[1]
        found = model_version(self._client, name, version)
        if len(self._read) > 1024:  # a long-lived control plane: keep the recent reads only
            self._read = {k: v for k, v in self._read.items() if now - v[0] < VERSION_READ_TTL_S}
        self._read[(name, version)] = (now, found)
        return found

    def resolve(self, name: str, ref: str) -> int:
        """The version number ``ref`` means: a number, ``latest``, ``production`` or ``staging``."""
        ref = ref.strip()
        if ref.isdecimal():
            if not 0 < int(ref) <= MAX_ID:
                registered_model(self._client, name)  # ModelNotFound beats a bad number
                raise VersionNotFound(f"model {name!r} has no version {ref}", field="ref")
            return self.get_version(name, int(ref)).version
        if ref.lower() == "latest":
            latest = latest_version(registered_model(self._client, name))
            if latest is None:
                raise VersionNotFound(f"model {name!r} has no versions", field="ref")
            return latest
        stage = _STAGE_REFS.get(ref.lower())
        if stage is None:
            known = ", ".join(["<number>", "latest", *_STAGE_REFS])
            raise InvalidInput(f"unknown version reference {ref!r}; use {known}", field="ref")
        for state in self._store.list_states(name):
            if state.stage is stage:
                return state.version
        registered_model(self._client, name)  # ModelNotFound beats an empty stage
        raise VersionNotFound(f"model {name!r} has no version in {stage}", field="ref")

    def require_model(self, name: str) -> None:
        """``ModelNotFound`` unless ``name`` is a registered model."""
        registered_model(self._client, name)

    def lifecycle_states(self, name: str) -> list[VersionState]:
        """The stages greenbutton's store records for a model's versions."""
        return self._store.list_states(name)

    def governed_uri(self, uri: str) -> str:
        """``uri`` with an alias of greenbutton's (``models:/NAME@production``, ``@staging``)
        replaced by the version the lifecycle puts there, whatever MLflow's alias says; a
        model greenbutton never moved, and any other URI, unchanged."""
        name, sep, alias = uri.removeprefix("models:/").rpartition("@")
        stage = _STAGE_REFS.get(alias.lower())
        if not uri.startswith("models:/") or not sep or stage is None:
            return uri
        states = self._store.list_states(name)
        if not states:
            logger.warning("%r is not governed by greenbutton: MLflow's alias %r is used",
                           name, alias)
            return uri
        version = next((s.version for s in states if s.stage is stage), None)
        if version is None:
            raise VersionNotFound(f"model {name!r} has no version in {stage}", field="ref")
        return f"models:/{name}/{version}"

    def transition(
        self,
        name: str,
        version: int,
        to: Stage,
        *,
        actor: str,
        reason: str | None = None,
        context: Mapping[str, object] | None = None,
    ) -> list[Transition]:
        """Move a version to ``to`` (archiving the one it replaces) and mirror it to MLflow;
        each move is audited with ``context`` (e.g. the approving request)."""
        if to is Stage.NONE:
            raise InvalidTransition(f"a version cannot go back to {Stage.NONE}", field="to")
        current = self.get_version(name, version).stage
        if current is to:
            raise InvalidTransition(f"version {version} of {name!r} is already in {to}")
        # the incumbent leaves first: the store allows one version per exclusive stage
        changes = [
            StageChange(name, s.version, to, Stage.ARCHIVED)
            for s in self._store.list_states(name)
            if to in EXCLUSIVE_STAGES and s.stage is to
        ]
        changes.append(StageChange(name, version, current, to))
        done = self._store.apply_transitions(changes, actor=actor, reason=reason,
                                             context=context)
        try:
            self.sync_mirror(name)
        except GreenbuttonError:
            # the lifecycle is committed; the mirror is repaired by the next sync_mirror
            logger.warning("could not mirror %r's lifecycle to MLflow", name, exc_info=True)
        return done

    def sync_mirror(self, name: str) -> list[str]:
        """Re-derive a model's MLflow aliases and stage tags from the store; idempotent."""
        model = registered_model(self._client, name)
        try:
            return sync_model(
                self._client,
                name,
                self._store.list_states(name),
                int_aliases(model.aliases),
                model_versions(self._client, name, model),
            )
        finally:  # its tags changed: the next read asks MLflow
            for key in [k for k in self._read if k[0] == name]:
                self._read.pop(key, None)

    def history(self, name: str, version: int | None = None) -> list[Transition]:
        """Recorded transitions of a model (or one version), oldest first."""
        return self._store.history(name, version)

    def mirror_drift(self) -> list[MirrorDrift]:
        """Every MLflow alias that points elsewhere than greenbutton's lifecycle (report only)."""
        states: dict[str, list[VersionState]] = defaultdict(list)
        for state in self._store.list_states():
            states[state.model].append(state)
        drift: list[MirrorDrift] = []
        for model in iter_registered_models(self._client):
            drift += drift_of(model.name, states.pop(model.name, []), int_aliases(model.aliases))
        for name, orphaned in sorted(states.items()):  # in the store, gone from MLflow
            drift += drift_of(name, orphaned, {})
        return drift


def _summary(model: RegisteredModel, states: list[VersionState]) -> ModelSummary:
    by_stage: dict[Stage, list[int]] = defaultdict(list)
    for state in states:
        by_stage[state.stage].append(state.version)
    return ModelSummary(
        name=model.name,
        latest_version=latest_version(model),
        description=model.description or None,
        production=max(by_stage[Stage.PRODUCTION], default=None),
        staging=max(by_stage[Stage.STAGING], default=None),
        archived=tuple(sorted(by_stage[Stage.ARCHIVED])),
    )


def _info(version: ModelVersion, stage: Stage) -> VersionInfo:
    return VersionInfo(
        name=version.name,
        version=int(version.version),
        run_id=version.run_id or None,
        source=version.source or "",
        created_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
        stage=stage,
        description=version.description or None,
        tags=dict(version.tags or {}),
    )
