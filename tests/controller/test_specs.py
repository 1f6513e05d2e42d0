"""DeploySpec validation, alias resolution, desired state from lifecycle + stored specs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from greenbutton.controller.desired import desired_state
from greenbutton.controller.reconcile import RouteSpec, ShadowSpec
from greenbutton.controller.rollback import previous_production
from greenbutton.controller.specs import DeploySpec, RouteRule, ShadowRule, resolve
from greenbutton.store import MemoryStore, Stage, StageChange
from greenbutton.store.deployment_memory import MemoryDeploymentStore

AB = DeploySpec(name="wine", model="wine",
                  routes=(RouteRule(to="production", weight=80),
                          RouteRule(to="challenger", weight=20)),
                  shadow=(ShadowRule(percent=5),))


def test_resolve_aliases_to_versions() -> None:
    spec = resolve(AB, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert spec is not None
    assert spec.version == 3
    assert spec.routes == (RouteSpec(version=3, weight=80), RouteSpec(version=4, weight=20))
    assert spec.mirrors == {}  # staging is routed already: no extra shadow


def test_resolve_missing_challenger_serves_production_alone() -> None:
    spec = resolve(AB, {Stage.PRODUCTION: 3})
    assert spec is not None and spec.routes == (RouteSpec(version=3, weight=100),)


def test_resolve_shadow_of_staging() -> None:
    spec = DeploySpec(name="wine", model="wine", shadow=(ShadowRule(to="staging", percent=5),))
    resolved = resolve(spec, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    assert resolved.shadow == (ShadowSpec(version=4, percent=5),)
    assert resolved.mirrors == {4: 5}


def test_resolve_nothing_returns_none() -> None:
    assert resolve(AB, {}) is None


def test_resolve_drops_a_pinned_version_that_left_production_and_staging() -> None:
    spec = DeploySpec(name="wine", model="wine", routes=(
        RouteRule(to="production", weight=50), RouteRule(to=4, weight=50)),
        shadow=(ShadowRule(to=5, percent=10),))
    resolved = resolve(spec, {Stage.PRODUCTION: 3})
    assert resolved is not None
    assert resolved.routes == (RouteSpec(version=3, weight=100),) and resolved.mirrors == {}


@pytest.mark.parametrize("bad", [
    {"routes": []},
    {"routes": [{"to": "nightly", "weight": 10}]},
    {"routes": [{"to": 0, "weight": 10}]},
    {"routes": [{"to": "production", "weight": 0}]},
    {"routes": [{"to": "production", "weight": 50}, {"to": "production", "weight": 50}]},
    {"sticky_header": "x user"},
    {"replicas": 3, "max_replicas": 2},
    {"resources": {"cpu_request": "1; rm -rf"}},
    {"name": "../etc"},
])
def test_endpoint_spec_invalid_raises(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DeploySpec.model_validate({"name": "wine", "model": "wine", **bad})


def test_challenger_is_synonym_of_staging() -> None:
    spec = DeploySpec(name="w", model="w", routes=(RouteRule(to="Challenger", weight=1),))
    assert resolve(spec, {Stage.STAGING: 9}) is not None


def _lifecycle() -> MemoryStore:
    store = MemoryStore()
    store.apply_transitions([StageChange("wine", 1, Stage.NONE, Stage.PRODUCTION),
                             StageChange("wine", 2, Stage.NONE, Stage.STAGING),
                             StageChange("iris", 5, Stage.NONE, Stage.PRODUCTION)], actor="a")
    return store


def test_desired_state_without_specs_is_production_only() -> None:
    desired = desired_state(_lifecycle().list_states(), MemoryDeploymentStore())
    assert [(d.name, d.version, d.routes) for d in desired] == [
        ("iris", 5, (RouteSpec(version=5, weight=100),)),
        ("wine", 1, (RouteSpec(version=1, weight=100),)),
    ]


def test_desired_state_stored_spec_replaces_default() -> None:
    specs = MemoryDeploymentStore()
    specs.put_spec("wine", AB.model_dump(mode="json"), actor="a")
    wine = [d for d in desired_state(_lifecycle().list_states(), specs) if d.name == "wine"][0]
    assert {r.version: r.weight for r in wine.routes} == {1: 80, 2: 20}


def test_desired_state_skips_other_targets_and_invalid_specs() -> None:
    specs = MemoryDeploymentStore()
    specs.put_spec("wine", {**AB.model_dump(mode="json"), "target": "kubernetes://c/ns"},
                   actor="a")
    specs.put_spec("broken", {"model": "wine", "routes": "nope"}, actor="a")
    names = [d.name for d in desired_state(_lifecycle().list_states(), specs, target_uri="local://")]
    assert names == ["iris"]


def test_previous_production_skips_current() -> None:
    store = MemoryStore()
    store.apply_transitions([StageChange("m", 1, Stage.NONE, Stage.PRODUCTION)], actor="a")
    store.apply_transitions([StageChange("m", 1, Stage.PRODUCTION, Stage.ARCHIVED),
                             StageChange("m", 2, Stage.NONE, Stage.PRODUCTION)], actor="a")
    assert previous_production(store.history("m"), current=2) == 1
    assert previous_production(store.history("m")[:1], current=1) is None
