"""POST /api/v1/reconcile, audit of spec changes and rollbacks, actor = authenticated caller;
with real governance (SQLite), a real registry and the local target (nothing deployed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from control_plane import in_process_control_plane
from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import DeploymentSpec
from greenbutton.controller.rollouts import audit_rollout
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets import open_target
from greenbutton.governance.access import Access
from greenbutton.wiring import build_registry, build_store

API = "/api/v1"
SPEC = {"model": "wine", "routes": [{"to": "production", "weight": 100}], "replicas": 2}


class World:
    def __init__(self, client: httpx.AsyncClient, access: Access, controller: Controller,
                 tokens: dict[str, str]) -> None:
        self.client, self.access, self.controller, self.tokens = client, access, controller, tokens

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def audit(self, action: str) -> list[tuple[str, str]]:
        return [(e.actor, e.target) for e in self.access.store.audit_entries()
                if e.action == action]


@pytest.fixture
async def world(settings: Settings, tmp_path: Path) -> AsyncIterator[World]:
    settings = settings.model_copy(update={"store": settings.store.model_copy(
        update={"uri": f"sqlite:///{tmp_path / 'gb.db'}"})})
    store = build_store(settings)
    async with in_process_control_plane(settings, store, build_registry(settings, store),
                                        is_signed_in=False) as found:
        access, admin = found.plane.access, found.admin
        assert found.admin_token is not None
        tokens = {"admin": found.admin_token}
        for name, role in (("ci", "viewer"), ("nobody", "viewer"), ("ops", "maintainer")):
            access.create_principal(admin, name, role)
            tokens[name] = access.issue_token(admin, name, "t").secret
        access.change_grant(admin, "ci", "wine", "deploy", is_granted=True)
        yield World(found.client, access, found.plane.controller, tokens)
    store.close()


async def test_reconcile_webhook_needs_deploy_somewhere_and_is_audited(world: World) -> None:
    assert (await world.client.post(f"{API}/reconcile")).status_code == 401
    denied = await world.client.post(f"{API}/reconcile", headers=world.auth("nobody"))
    assert denied.status_code == 403
    for who in ("ci", "ops", "admin"):  # a deploy grant on one model, or a role implying it
        response = await world.client.post(f"{API}/reconcile", headers=world.auth(who))
        assert response.status_code == 202, response.text
    assert world.audit("controller.reconcile") == [
        ("ci", "controller"), ("ops", "controller"), ("admin", "controller")]


async def test_spec_changes_record_the_caller_not_the_body_and_are_audited(world: World) -> None:
    put = await world.client.put(f"{API}/deployments/wine/spec", headers=world.auth("ci"),
                                 json={"spec": SPEC, "actor": "mallory"})
    assert put.status_code == 200, put.text
    assert put.json()["updated_by"] == "ci"
    deleted = await world.client.request("DELETE", f"{API}/deployments/wine/spec",
                                         headers=world.auth("ops"), json={"actor": "mallory"})
    assert deleted.status_code == 200, deleted.text
    assert world.audit("deployment.spec.put") == [("ci", "deployment:wine")]
    assert world.audit("deployment.spec.delete") == [("ops", "deployment:wine")]
    [entry] = [e for e in world.access.store.audit_entries()
               if e.action == "deployment.spec.put"]
    assert '"replicas":2' in entry.after.replace(" ", "")


async def test_finished_rollout_is_audited_once_by_the_controller_hook(
    world: World, settings: Settings, tmp_path: Path
) -> None:
    desired = [DeploymentSpec(name="wine", model="wine", version=3, replicas=2)]
    target = open_target(f"kubernetes+dir://{tmp_path / 'gitops'}", settings)
    controller = Controller(lambda: list(desired), target, RouteTable(), settings,
                            on_rollout=audit_rollout(world.access.store.append_audit))
    for _ in range(3):
        await controller.reconcile_once()
    assert world.audit("deployment.rollout") == [("greenbutton", "deployment:wine")]
    desired[:] = [DeploymentSpec(name="wine", model="wine", version=4, replicas=2)]
    for _ in range(3):
        await controller.reconcile_once()
    rollouts = [e for e in world.access.store.audit_entries() if e.action == "deployment.rollout"]
    assert len(rollouts) == 2 and '"routes":[[4,100]]' in rollouts[1].after.replace(" ", "")
