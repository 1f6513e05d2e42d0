"""Role × action matrix over HTTP: every control-plane write answers 2xx to an allowed role,
403 to the others and 401 without a token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from greenbutton.registry import Stage

from .conftest import ROLES, World

API = "/api/v1"
Call = Callable[[httpx.AsyncClient, World, dict[str, str]], Awaitable[httpx.Response]]


def _request(world: World, *, status: str = "pending") -> int:
    """A fresh request by the data scientist (blocked when ``status == "blocked"``)."""
    from greenbutton.store.governance_records import GateOutcome

    if status == "blocked":
        world.gates.verdicts[(world.model, 2)] = [GateOutcome("metric", False, {"reason": "x"})]
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 2,
                                      Stage.PRODUCTION)
    return request.id


async def archive(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    body = {"stage": "Archived", "actor": "x"}
    return await c.post(f"{API}/models/{w.model}/versions/1/transitions", json=body, headers=h)


async def promote(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    body = {"stage": "Production", "actor": "x"}
    return await c.post(f"{API}/models/{w.model}/versions/1/transitions", json=body, headers=h)


async def propose(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    body = {"stage": "Staging"}
    return await c.post(f"{API}/models/{w.model}/versions/1/requests", json=body, headers=h)


def decision(kind: str, status: str = "pending") -> Call:
    async def call(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
        request_id = _request(w, status=status)
        body = {"reason": "because"}
        return await c.post(f"{API}/requests/{request_id}/{kind}", json=body, headers=h)
    return call


async def policy(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    return await c.put(f"{API}/models/{w.model}/policy", json={"four_eyes": True}, headers=h)


async def create_user(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    return await c.post(f"{API}/principals", json={"name": "eve", "role": "viewer"}, headers=h)


async def create_token(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    return await c.post(f"{API}/tokens", json={"principal": "viewer"}, headers=h)


async def revoke_token(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    victim = f"victim-{len(w.access.store.list_principals())}"
    w.access.create_principal(w.callers["admin"], victim, "viewer")
    issued = w.access.issue_token(w.callers["admin"], victim, "victim")
    return await c.post(f"{API}/tokens/{issued.info.token_id}/revoke", json={}, headers=h)


async def grant(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    body = {"principal": "viewer", "model": w.model, "permission": "invoke"}
    return await c.post(f"{API}/grants", json=body, headers=h)


async def ungrant(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    w.access.change_grant(w.callers["admin"], "viewer", w.model, "read", is_granted=True)
    body = {"principal": "viewer", "model": w.model, "permission": "read"}
    return await c.post(f"{API}/grants/revoke", json=body, headers=h)


async def rollback(c: httpx.AsyncClient, w: World, h: dict[str, str]) -> httpx.Response:
    return await c.post(f"{API}/models/{w.model}/rollback", json={"actor": "x"}, headers=h)


WRITES: dict[str, tuple[Call, set[str], int]] = {
    "archive": (archive, {"admin", "maintainer"}, 201),
    "promote": (promote, {"admin", "maintainer", "data-scientist"}, 201),
    "propose": (propose, {"admin", "maintainer", "data-scientist"}, 201),
    "approve": (decision("approve"), {"admin", "maintainer"}, 200),
    "reject": (decision("reject"), {"admin", "maintainer"}, 200),
    "override": (decision("override", "blocked"), {"admin"}, 200),
    "policy": (policy, {"admin"}, 200),
    "create_user": (create_user, {"admin"}, 201),
    "create_token": (create_token, {"admin"}, 201),
    "revoke_token": (revoke_token, {"admin"}, 200),
    "grant": (grant, {"admin"}, 201),
    "ungrant": (ungrant, {"admin"}, 200),
}
"""Expected: (call, roles allowed, success status); a data scientist's promote is only a
proposal (202) as they do not hold ``approve``."""


@pytest.mark.parametrize("role", [*ROLES, "anonymous"])
@pytest.mark.parametrize("action", sorted(WRITES))
async def test_write_matrix(api: httpx.AsyncClient, world: World, action: str,
                            role: str) -> None:
    call, allowed, success = WRITES[action]
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {world.secrets[role]}"}
    response = await call(api, world, headers)
    if role == "anonymous":
        expected = 401
    elif role in allowed:
        expected = 202 if (action, role) == ("promote", "data-scientist") else success
    else:
        expected = 403
    assert response.status_code == expected, response.text


async def test_rollback_refused_without_deploy(api: httpx.AsyncClient, world: World) -> None:
    headers = {"Authorization": f"Bearer {world.secrets['data-scientist']}"}
    assert (await rollback(api, world, headers)).status_code == 403
    assert (await rollback(api, world, {})).status_code == 401


async def test_listing_shows_only_readable_models(api: httpx.AsyncClient, world: World) -> None:
    world.access.store.grant("viewer", "other", "read", by="t", events=[])
    outsider = world.access.create_principal(world.callers["admin"], "outsider", "viewer")
    assert outsider.role == "viewer"
    headers = {"Authorization": f"Bearer {world.secrets['viewer']}"}
    names: Any = [m["name"] for m in (await api.get(f"{API}/models", headers=headers)).json()[
        "models"]]
    assert world.model in names
    assert (await api.get(f"{API}/models")).status_code == 401


async def test_revoked_token_is_refused_at_once(api: httpx.AsyncClient, world: World) -> None:
    issued = world.access.issue_token(world.callers["admin"], "maintainer")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert (await api.get(f"{API}/whoami", headers=headers)).status_code == 200
    world.access.revoke_token(world.callers["admin"], issued.info.token_id)
    assert (await api.get(f"{API}/whoami", headers=headers)).status_code == 401


async def test_self_approval_refused_over_http_with_four_eyes(
        api: httpx.AsyncClient, world: World) -> None:
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    headers = {"Authorization": f"Bearer {world.secrets['maintainer']}"}
    proposed = await api.post(f"{API}/models/{world.model}/versions/1/requests",
                              json={"stage": "Production"}, headers=headers)
    request_id = proposed.json()["request"]["id"]
    denied = await api.post(f"{API}/requests/{request_id}/approve", json={}, headers=headers)
    assert denied.status_code == 403
    admin = {"Authorization": f"Bearer {world.secrets['admin']}"}
    first = await api.post(f"{API}/requests/{request_id}/approve", json={}, headers=admin)
    second = await api.post(f"{API}/requests/{request_id}/approve", json={}, headers=admin)
    assert (first.status_code, second.status_code) == (200, 409)


async def test_blocked_request_answers_409_with_reason(api: httpx.AsyncClient,
                                                      world: World) -> None:
    request_id = _request(world, status="blocked")
    headers = {"Authorization": f"Bearer {world.secrets['admin']}"}
    response = await api.post(f"{API}/requests/{request_id}/approve", json={}, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "promotion_blocked"
    no_reason = await api.post(f"{API}/requests/{request_id}/override", json={},
                               headers=headers)
    assert no_reason.status_code == 422


@pytest.mark.parametrize("name", ["o'brien", "x'); DROP TABLE principals; --", "../../etc",
                                  "模型/ü", "n" * 10_000])
async def test_hostile_principal_names_stored_verbatim_or_422(
        api: httpx.AsyncClient, world: World, name: str) -> None:
    headers = {"Authorization": f"Bearer {world.secrets['admin']}"}
    response = await api.post(f"{API}/principals", json={"name": name, "role": "viewer"},
                              headers=headers)
    if len(name) > 200:
        assert response.status_code == 422
        return
    assert response.status_code == 201 and response.json()["name"] == name
    listed = (await api.get(f"{API}/principals", headers=headers)).json()["principals"]
    assert name in [p["name"] for p in listed]
