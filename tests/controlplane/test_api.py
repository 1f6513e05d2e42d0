"""The control-plane API over ASGI: transitions, listings, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import mlflow
import pytest

from control_plane import control_plane_client, log_echo_versions
from greenbutton.config import Settings
from greenbutton.wiring import build_registry, build_store

API = "/api/v1"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    log_echo_versions(settings, [{}, {}])
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture
async def api(home: Settings) -> AsyncIterator[httpx.AsyncClient]:
    store = build_store(home)
    async with control_plane_client(home, store, build_registry(home, store)) as client:
        yield client
    store.close()


async def _promote(api: httpx.AsyncClient, ref: str, stage: str = "production",
                   **extra: Any) -> httpx.Response:
    return await api.post(f"{API}/models/echo/versions/{ref}/transitions",
                          json={"stage": stage, "actor": "alice", **extra})


async def test_transition_promotes_and_archives_previous(api: httpx.AsyncClient) -> None:
    first = await _promote(api, "1")
    assert first.status_code == 201
    second = await _promote(api, "latest", reason="better")
    assert second.status_code == 201
    moved = [(t["version"], t["to_stage"]) for t in second.json()["transitions"]]
    assert moved == [(1, "Archived"), (2, "Production")]
    models = (await api.get(f"{API}/models")).json()["models"]
    assert [(m["name"], m["production"]) for m in models] == [("echo", 2)]
    version = (await api.get(f"{API}/models/echo/versions/production")).json()
    assert version["version"] == 2 and version["stage"] == "Production"


async def test_transition_unknown_model_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/models/nope/versions/1/transitions",
                              json={"stage": "Production", "actor": "alice"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_not_found"


async def test_transition_bad_stage_names_the_field(api: httpx.AsyncClient) -> None:
    response = await _promote(api, "1", stage="Heaven")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "stage"


async def test_transition_unknown_field_is_refused(api: httpx.AsyncClient) -> None:
    response = await _promote(api, "1", approve_myself=True)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "approve_myself"


async def test_transition_non_json_body_is_415(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/models/echo/versions/1/transitions",
                              content=b"stage=Production", headers={"content-type":
                                                                    "application/x-www-form-urlencoded"})
    assert response.status_code == 415


async def test_transition_from_another_site_is_403(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{API}/models/echo/versions/1/transitions",
                              json={"stage": "Production", "actor": "mallory"},
                              headers={"origin": "https://evil.example"})
    assert response.status_code == 403


async def test_request_with_foreign_host_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/models", headers={"host": "evil.example:8600"})
    assert response.status_code == 400


async def test_history_lists_transitions(api: httpx.AsyncClient) -> None:
    await _promote(api, "1", stage="staging")
    history = (await api.get(f"{API}/models/echo/transitions")).json()["transitions"]
    # the body's actor is a claim; the authenticated caller is what is recorded
    assert history and all(t["actor"] == "admin" for t in history)


async def test_unknown_deployment_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{API}/deployments/nope")
    assert response.status_code == 404
