"""The control plane's own OpenAPI document: every API route, its body, its security."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import mlflow
import pytest
from starlette.routing import Route

from control_plane import control_plane_client
from greenbutton.config import Settings
from greenbutton.controlplane import api
from greenbutton.wiring import build_registry, build_store
from mlflow_template import seed_mlflow_db


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    seed_mlflow_db(settings)
    previous = mlflow.get_tracking_uri()
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture
async def client(home: Settings) -> AsyncIterator[httpx.AsyncClient]:
    store = build_store(home)
    async with control_plane_client(home, store, build_registry(home, store)) as client:
        yield client
    store.close()


async def test_openapi_documents_every_api_route_with_bearer_security(
        client: httpx.AsyncClient) -> None:
    answer = await client.get("/openapi.json")  # no token: the document holds no data
    assert answer.status_code == 200
    document = answer.json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    routed = {(route.path.replace(":int}", "}"), method.lower()) for route in api.routes()
              if isinstance(route, Route) for method in (route.methods or set()) - {"HEAD"}}
    assert routed == documented
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "An API token (greenbutton token "
                                                          "create)."}
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/api/v1/health"]["get"]["security"] == []


async def test_openapi_bodies_come_from_the_request_models(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    propose = document["paths"]["/api/v1/models/{name}/versions/{ref}/requests"]["post"]
    ref = propose["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["stage"] and schema["additionalProperties"] is False
    decide = document["paths"]["/api/v1/requests/{id}/{decision}"]["post"]
    params = {p["name"]: p["schema"] for p in decide["parameters"]}
    assert params["id"]["type"] == "integer" and params["decision"]["enum"] == [
        "approve", "reject", "override"]
