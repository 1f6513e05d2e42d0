"""Resolving a version reference (number, ``latest``, stage) from greenbutton's lifecycle."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow import MlflowClient

from greenbutton.errors import InvalidInput, ModelNotFound, VersionNotFound
from greenbutton.registry import Registry, Stage

Register = Callable[..., str]


def test_resolve_production_returns_its_version(registry: Registry, register: Register) -> None:
    name = register(2)
    registry.transition(name, 2, Stage.PRODUCTION, actor="alice")
    assert registry.resolve(name, "Production") == 2


def test_resolve_latest_returns_highest_version(registry: Registry, register: Register) -> None:
    name = register(3)
    assert registry.resolve(name, "latest") == 3


def test_resolve_number_returns_it(registry: Registry, register: Register) -> None:
    name = register(2)
    assert registry.resolve(name, "1") == 1


def test_resolve_unknown_number_raises_version_not_found(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    with pytest.raises(VersionNotFound):
        registry.resolve(name, "9")


def test_resolve_empty_stage_raises_version_not_found(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    with pytest.raises(VersionNotFound):
        registry.resolve(name, "staging")


def test_resolve_stage_of_unknown_model_raises_model_not_found(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.resolve("no-such-model", "production")


def test_resolve_unknown_reference_raises_invalid_input(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    with pytest.raises(InvalidInput):
        registry.resolve(name, "champion")


def test_resolve_ignores_alias_set_directly_in_mlflow(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(1)
    client.set_registered_model_alias(name, "production", "1")
    with pytest.raises(VersionNotFound):
        registry.resolve(name, "production")
