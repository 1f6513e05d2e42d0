"""One path to traffic: a deployment spec reaches only versions the governed lifecycle put in
Production or Staging, and under four-eyes a spec change needs a second person too."""

from __future__ import annotations

import httpx
import pytest

from greenbutton.registry import Stage
from greenbutton.store.sql import SqlStore

from .conftest import World

API = "/api/v1"


@pytest.fixture
def lifecycle_store(both_backends: SqlStore) -> SqlStore:
    """Every test here on SQLite and on PostgreSQL."""
    return both_backends


def as_(world: World, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.secrets[who]}"}


def routes(*pairs: tuple[str | int, int]) -> dict[str, object]:
    return {"spec": {"model": "", "routes": [{"to": to, "weight": w} for to, w in pairs]}}


async def put(api: httpx.AsyncClient, world: World, body: dict[str, object],
              who: str = "maintainer") -> httpx.Response:
    body["spec"]["model"] = world.model  # type: ignore[index]
    return await api.put(f"{API}/deployments/{world.model}/spec", json=body,
                         headers=as_(world, who))


@pytest.fixture
def production_v1(world: World) -> World:
    world.approvals.promote(world.callers["admin"], world.model, 1, Stage.PRODUCTION)
    return world


async def test_spec_pinning_a_version_awaiting_approval_is_refused(
        production_v1: World, api: httpx.AsyncClient) -> None:
    world = production_v1
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    pending = world.approvals.propose(world.callers["data-scientist"], world.model, 2,
                                      Stage.PRODUCTION)
    assert pending.status == "pending"
    answer = await put(api, world, routes((2, 100)))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "spec.routes" and "version 2" in error["message"]


@pytest.mark.parametrize("version", [99, 3])
async def test_spec_pinning_an_unregistered_or_archived_version_is_refused(
        production_v1: World, api: httpx.AsyncClient, version: int) -> None:
    world = production_v1
    world.approvals.promote(world.callers["admin"], world.model, 3, Stage.STAGING)
    world.approvals.promote(world.callers["admin"], world.model, 3, Stage.ARCHIVED)
    answer = await put(api, world, routes(("production", 90), (version, 10)))
    assert answer.status_code == 422 and f"version {version}" in answer.json()["error"]["message"]


async def test_spec_may_pin_the_staging_version(production_v1: World,
                                                api: httpx.AsyncClient) -> None:
    world = production_v1
    world.approvals.promote(world.callers["admin"], world.model, 2, Stage.STAGING)
    answer = await put(api, world, routes(("production", 80), (2, 20)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["revision"] == 1


async def test_shadow_to_an_ungoverned_version_is_refused(production_v1: World,
                                                          api: httpx.AsyncClient) -> None:
    world = production_v1
    body = routes(("production", 100))
    body["spec"]["shadow"] = [{"to": 2, "percent": 50}]  # type: ignore[index]
    answer = await put(api, world, body)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "spec.shadow"


async def test_under_four_eyes_a_spec_change_waits_for_someone_else(
        production_v1: World, api: httpx.AsyncClient) -> None:
    world = production_v1
    world.approvals.promote(world.callers["admin"], world.model, 2, Stage.STAGING)
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    answer = await put(api, world, routes(("production", 50), ("challenger", 50)))
    assert answer.status_code == 202, answer.text
    request = answer.json()["request"]
    assert (request["kind"], request["status"]) == ("deployment", "pending")
    spec = await api.get(f"{API}/deployments/{world.model}/spec", headers=as_(world, "admin"))
    assert spec.status_code == 404  # nothing stored yet (no deployment runs either)
    own = await api.post(f"{API}/requests/{request['id']}/approve", json={},
                         headers=as_(world, "maintainer"))
    assert own.status_code == 403
    again = await put(api, world, routes(("production", 10), ("challenger", 90)))
    assert again.status_code == 409 and f"#{request['id']}" in again.json()["error"]["message"]
    approved = await api.post(f"{API}/requests/{request['id']}/approve", json={},
                              headers=as_(world, "admin"))
    assert approved.status_code == 200, approved.text
    stored = world.access.store.audit_entries(actions=["deployment.spec.put"])
    assert stored[-1].actor == "admin" and f'"request_id":{request["id"]}' in stored[-1].after


async def test_duplicate_pending_promotion_is_409_naming_the_open_request(
        production_v1: World, api: httpx.AsyncClient) -> None:
    world = production_v1
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    first = world.approvals.propose(world.callers["data-scientist"], world.model, 2,
                                    Stage.PRODUCTION)
    again = await api.post(f"{API}/models/{world.model}/versions/2/requests",
                           json={"stage": "Production"}, headers=as_(world, "maintainer"))
    assert again.status_code == 409 and f"#{first.id}" in again.json()["error"]["message"]
