"""The lifecycle over a real MLflow: stages in greenbutton's store, mirrored as aliases and tags."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

from greenbutton.errors import InvalidTransition, ModelNotFound, VersionNotFound
from greenbutton.registry import STAGE_TAG, Registry, Stage
from greenbutton.store import LifecycleStore

Register = Callable[..., str]


def aliases(client: MlflowClient, name: str) -> dict[str, int]:
    """The model's MLflow aliases, versions as ints."""
    return {a: int(v) for a, v in client.get_registered_model(name).aliases.items()}


def stage_tag(client: MlflowClient, name: str, version: int) -> str | None:
    """The version's ``greenbutton.stage`` tag in MLflow."""
    return client.get_model_version(name, str(version)).tags.get(STAGE_TAG)


class AliasFailingClient(MlflowClient):
    """An MLflow client whose alias writes fail, as when the tracking server goes away."""

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """Fail like an unreachable server."""
        raise MlflowException("connection refused", error_code=INTERNAL_ERROR)


def test_transition_to_production_mirrors_alias_and_tag(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    assert aliases(client, name) == {"production": 1}
    assert stage_tag(client, name, 1) == "Production"


def test_transition_second_version_archives_first_and_moves_alias(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(2)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    done = registry.transition(name, 2, Stage.PRODUCTION, actor="bob")
    assert {(t.version, t.from_stage, t.to_stage) for t in done} == {
        (2, Stage.NONE, Stage.PRODUCTION),
        (1, Stage.PRODUCTION, Stage.ARCHIVED),
    }
    assert [v.stage for v in registry.list_versions(name)] == [Stage.ARCHIVED, Stage.PRODUCTION]
    assert aliases(client, name) == {"production": 2}
    assert (stage_tag(client, name, 1), stage_tag(client, name, 2)) == ("Archived", "Production")


def test_transition_staging_keeps_production(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(2)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 2, Stage.STAGING, actor="alice")
    assert aliases(client, name) == {"production": 1, "staging": 2}


def test_transition_production_to_archived_deletes_alias(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 1, Stage.ARCHIVED, actor="alice")
    assert aliases(client, name) == {}
    assert stage_tag(client, name, 1) == "Archived"


def test_transition_archived_to_production_rolls_back(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(2)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 2, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice", reason="v2 regressed")
    assert registry.resolve(name, "production") == 1
    assert registry.get_version(name, 2).stage is Stage.ARCHIVED
    assert aliases(client, name) == {"production": 1}


def test_transition_same_stage_raises_invalid_transition(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.STAGING, actor="alice")
    with pytest.raises(InvalidTransition):
        registry.transition(name, 1, Stage.STAGING, actor="alice")


def test_transition_to_none_raises_invalid_transition(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.STAGING, actor="alice")
    with pytest.raises(InvalidTransition):
        registry.transition(name, 1, Stage.NONE, actor="alice")


def test_transition_unknown_version_raises_version_not_found(
    registry: Registry, store: LifecycleStore, register: Register
) -> None:
    name = register(1)
    with pytest.raises(VersionNotFound):
        registry.transition(name, 7, Stage.PRODUCTION, actor="alice")
    assert store.list_states(name) == []


def test_transition_unknown_model_raises_model_not_found(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.transition("no-such-model", 1, Stage.PRODUCTION, actor="alice")


def test_transition_mirror_failure_keeps_lifecycle_change(
    client: MlflowClient, store: LifecycleStore, register: Register
) -> None:
    name = register(1)
    failing = AliasFailingClient(tracking_uri=client.tracking_uri, registry_uri=client.tracking_uri)
    Registry(failing, store).transition(name, 1, Stage.PRODUCTION, actor="alice")
    assert store.stage_of(name, 1) is Stage.PRODUCTION
    assert aliases(client, name) == {}


def test_sync_mirror_after_failed_mirror_sets_alias(
    client: MlflowClient, store: LifecycleStore, register: Register
) -> None:
    name = register(1)
    failing = AliasFailingClient(tracking_uri=client.tracking_uri, registry_uri=client.tracking_uri)
    Registry(failing, store).transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry = Registry(client, store)
    assert [d.model for d in registry.mirror_drift()].count(name) == 1
    registry.sync_mirror(name)
    assert aliases(client, name) == {"production": 1}
    assert [d for d in registry.mirror_drift() if d.model == name] == []


def test_sync_mirror_repairs_missing_alias(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    client.delete_registered_model_alias(name, "production")
    assert registry.sync_mirror(name) != []
    assert aliases(client, name) == {"production": 1}


def test_sync_mirror_in_sync_changes_nothing(registry: Registry, register: Register) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.STAGING, actor="alice")
    assert registry.sync_mirror(name) == []


def test_get_version_returns_mlflow_record_and_stage(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(1)
    registry.transition(name, 1, Stage.STAGING, actor="alice")
    info = registry.get_version(name, 1)
    expected = client.get_model_version(name, "1")
    assert (info.name, info.version, info.run_id, info.source, info.stage) == (
        name,
        1,
        expected.run_id,
        expected.source,
        Stage.STAGING,
    )
    assert info.created_at.tzinfo is UTC
    assert info.tags[STAGE_TAG] == "Staging"


def test_get_version_unknown_model_raises_model_not_found(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.get_version("no-such-model", 1)


def test_get_version_unknown_version_raises_version_not_found(
    registry: Registry, register: Register
) -> None:
    name = register(1)
    with pytest.raises(VersionNotFound):
        registry.get_version(name, 2)


def test_list_versions_returns_every_version_oldest_first(
    registry: Registry, register: Register
) -> None:
    name = register(3)
    assert [v.version for v in registry.list_versions(name)] == [1, 2, 3]


@pytest.mark.parametrize(
    "name", ["it's single", 'say "double"', "both ' and \" quotes", "ünïcødé 模型"]
)
def test_list_versions_odd_names_returns_only_that_model(
    registry: Registry, register: Register, name: str
) -> None:
    register(2, name=name)
    assert [(v.name, v.version) for v in registry.list_versions(name)] == [(name, 1), (name, 2)]


def test_list_versions_unknown_model_raises_model_not_found(registry: Registry) -> None:
    with pytest.raises(ModelNotFound):
        registry.list_versions("no-such-model")


def test_list_models_reports_stages(registry: Registry, register: Register) -> None:
    name = register(3)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 2, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 3, Stage.STAGING, actor="alice")
    (summary,) = [m for m in registry.list_models() if m.name == name]
    assert (summary.latest_version, summary.production, summary.staging, summary.archived) == (
        3,
        2,
        3,
        (1,),
    )


def test_mirror_drift_reports_alias_set_directly_in_mlflow(
    registry: Registry, client: MlflowClient, register: Register
) -> None:
    name = register(2)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    client.set_registered_model_alias(name, "production", "2")
    drift = [d for d in registry.mirror_drift() if d.model == name]
    assert [(d.alias, d.mlflow_version, d.lifecycle_version) for d in drift] == [
        ("production", 2, 1)
    ]
    assert name in str(drift[0])


def test_mirror_drift_in_sync_reports_nothing(registry: Registry, register: Register) -> None:
    name = register(2)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(name, 2, Stage.STAGING, actor="alice")
    assert [d for d in registry.mirror_drift() if d.model == name] == []


def test_history_records_who_when_from_to(registry: Registry, register: Register) -> None:
    name = register(2)
    before = datetime.now(UTC)
    registry.transition(name, 1, Stage.PRODUCTION, actor="alice", reason="first release")
    registry.transition(name, 2, Stage.PRODUCTION, actor="bob", reason="better")
    steps = [
        (t.version, t.from_stage, t.to_stage, t.actor, t.reason) for t in registry.history(name)
    ]
    assert steps == [
        (1, Stage.NONE, Stage.PRODUCTION, "alice", "first release"),
        (1, Stage.PRODUCTION, Stage.ARCHIVED, "bob", "better"),
        (2, Stage.NONE, Stage.PRODUCTION, "bob", "better"),
    ]
    assert all(before <= t.at <= before + timedelta(minutes=1) for t in registry.history(name))
    assert [t.version for t in registry.history(name, 2)] == [2]
