"""Deployment specs and rollback over the control-plane API (ASGI, real registry and store)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

from control_plane import control_plane_client, log_echo_versions
from greenbutton.config import Settings
from greenbutton.wiring import build_registry, build_store

API = "/api/v1"
AB = {"model": "echo", "routes": [{"to": "production", "weight": 80},
                                  {"to": "challenger", "weight": 20}],
      "shadow": [{"percent": 5}], "sticky_header": "X-User"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    log_echo_versions(settings, [{}, {}, {}])
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture
async def api(home: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A control plane with its own lifecycle store (MLflow's versions are shared)."""
    store_settings = home.store.model_copy(update={"uri": f"sqlite:///{tmp_path / 'gb.db'}"})
    settings = home.model_copy(update={"store": store_settings})
    store = build_store(settings)
    async with control_plane_client(settings, store, build_registry(settings, store)) as client:
        yield client
    store.close()


async def _promote(api: httpx.AsyncClient, ref: str) -> None:
    response = await api.post(f"{API}/models/echo/versions/{ref}/transitions",
                              json={"stage": "Production", "actor": "alice"})
    assert response.status_code == 201, response.text


async def test_put_spec_then_get_returns_it(api: httpx.AsyncClient) -> None:
    put = await api.put(f"{API}/deployments/echo/spec", json={"spec": AB, "actor": "alice"})
    assert put.status_code == 200, put.text
    got = (await api.get(f"{API}/deployments/echo/spec")).json()
    assert got["revision"] == 1 and got["is_default"] is False
    assert got["spec"]["routes"][1] == {"to": "challenger", "weight": 20}
    assert got["spec"]["shadow"] == [{"to": "staging", "percent": 5}]
    assert got["spec"]["sticky_header"] == "x-user"


async def test_put_spec_stale_revision_is_409(api: httpx.AsyncClient) -> None:
    await api.put(f"{API}/deployments/echo/spec", json={"spec": AB, "actor": "alice"})
    stale = await api.put(f"{API}/deployments/echo/spec",
                          json={"spec": AB, "actor": "bob", "expected_revision": 0})
    assert stale.status_code == 409


async def test_put_spec_invalid_route_is_422(api: httpx.AsyncClient) -> None:
    bad = {"model": "echo", "routes": [{"to": "nightly", "weight": 10}]}
    response = await api.put(f"{API}/deployments/echo/spec", json={"spec": bad, "actor": "a"})
    assert response.status_code == 422


async def test_delete_spec_then_get_is_404(api: httpx.AsyncClient) -> None:
    await api.put(f"{API}/deployments/echo/spec", json={"spec": AB, "actor": "alice"})
    deleted = await api.request("DELETE", f"{API}/deployments/echo/spec", json={"actor": "a"})
    assert deleted.status_code == 200
    assert (await api.get(f"{API}/deployments/echo/spec")).status_code == 404


async def test_rollback_returns_previous_production(api: httpx.AsyncClient) -> None:
    await _promote(api, "1")
    await _promote(api, "3")
    response = await api.post(f"{API}/models/echo/rollback", json={"actor": "alice"})
    assert response.status_code == 201, response.text
    moved = [(t["version"], t["to_stage"]) for t in response.json()["transitions"]]
    assert moved == [(3, "Archived"), (1, "Production")]
    history = (await api.get(f"{API}/models/echo/transitions")).json()["transitions"]
    assert history[-1]["reason"] == "rollback from v3 to v1"


async def test_rollback_without_previous_is_409(api: httpx.AsyncClient) -> None:
    await _promote(api, "2")
    response = await api.post(f"{API}/models/echo/rollback", json={"actor": "alice"})
    assert response.status_code == 409
