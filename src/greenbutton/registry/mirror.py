"""Mirroring greenbutton's lifecycle into MLflow aliases and tags, for people browsing MLflow.

The mirror is derived from the store every time, so re-running it repairs a failed attempt.
It is for visibility only: an alias set directly in MLflow deploys nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from ..store.protocol import Stage, VersionState
from .catalog import model_not_found, translate_mlflow_errors, version_not_found
from .records import MirrorDrift

ALIASES: dict[Stage, str] = {Stage.PRODUCTION: "production", Stage.STAGING: "staging"}
"""Stages held by one version at a time, and the MLflow alias that mirrors each."""
STAGE_TAG = "greenbutton.stage"
"""Model-version tag holding the version's greenbutton stage."""


def desired_aliases(states: Iterable[VersionState]) -> dict[str, int | None]:
    """The alias → version mapping the lifecycle calls for (``None``: alias absent)."""
    wanted: dict[str, int | None] = dict.fromkeys(ALIASES.values())
    for state in states:
        if state.stage in ALIASES:
            wanted[ALIASES[state.stage]] = state.version
    return wanted


def sync_model(
    client: MlflowClient,
    name: str,
    states: list[VersionState],
    aliases: dict[str, int],
    versions: list[ModelVersion],
) -> list[str]:
    """Make one model's aliases and stage tags match ``states``; returns what was changed."""
    existing = {int(v.version): v for v in versions}
    done: list[str] = []
    for state in states:
        version = existing.get(state.version)
        if version is None or version.tags.get(STAGE_TAG) == state.stage.value:
            continue
        with translate_mlflow_errors(version_not_found(name, state.version)):
            client.set_model_version_tag(name, str(state.version), STAGE_TAG, state.stage.value)
        done.append(f"tagged v{state.version} {STAGE_TAG}={state.stage.value}")
    for alias, wanted in desired_aliases(states).items():
        current = aliases.get(alias)
        if wanted == current or (wanted is not None and wanted not in existing):
            continue
        with translate_mlflow_errors(model_not_found(name)):
            if wanted is None:
                client.delete_registered_model_alias(name, alias)
                done.append(f"deleted alias {alias!r}")
            else:
                client.set_registered_model_alias(name, alias, str(wanted))
                done.append(f"set alias {alias!r} → v{wanted}")
    return done


def drift_of(name: str, states: list[VersionState], aliases: dict[str, int]) -> list[MirrorDrift]:
    """Where one model's MLflow aliases differ from its lifecycle."""
    return [
        MirrorDrift(name, alias, aliases.get(alias), wanted)
        for alias, wanted in desired_aliases(states).items()
        if aliases.get(alias) != wanted
    ]


def int_aliases(aliases: dict[str, int | str] | None) -> dict[str, int]:
    """MLflow's alias mapping with version numbers as ints."""
    return {alias: int(version) for alias, version in (aliases or {}).items()}
