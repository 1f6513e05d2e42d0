"""Odd input to the governance API gets a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import httpx
import pytest

from greenbutton.client import ControlPlaneClient
from greenbutton.errors import NotFound

from .conftest import World

API = "/api/v1"
HUGE = "99999999999999999999999"


def admin(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.secrets['admin']}"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"{API}/requests/{HUGE}"),
    ("POST", f"{API}/requests/{HUGE}/approve"),
    ("POST", f"{API}/requests/{HUGE}/reject"),
    ("GET", f"{API}/models/{{model}}/versions/{HUGE}"),
    ("GET", f"{API}/models/{{model}}/versions/{HUGE}/gates"),
    ("POST", f"{API}/models/{{model}}/versions/{HUGE}/requests"),
])
async def test_ids_beyond_64_bits_are_not_found(world: World, api: httpx.AsyncClient,
                                                method: str, path: str) -> None:
    body = {"stage": "Production"} if path.endswith("requests") else {}
    answer = await api.request(method, path.format(model=world.model),
                               json=body if method == "POST" else None, headers=admin(world))
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", "limit=100001", "after=-1",
                                   "limit=abc", f"after={HUGE}"])
async def test_audit_paging_outside_its_bounds_is_422(world: World, api: httpx.AsyncClient,
                                                      query: str) -> None:
    answer = await api.get(f"{API}/audit?{query}", headers=admin(world))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] in ("limit", "after")


async def test_policy_for_a_model_that_does_not_exist_is_404(
        world: World, api: httpx.AsyncClient) -> None:
    answer = await api.put(f"{API}/models/no-such-model/policy", json={"four_eyes": True},
                           headers=admin(world))
    assert answer.status_code == 404, answer.text


def test_client_escapes_a_newline_in_a_model_name() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": {"type": "model_not_found",
                                                   "message": "no model", "field": "name"}})

    client = ControlPlaneClient("http://cp", transport=httpx.MockTransport(handler))
    with pytest.raises(NotFound):
        client.move("a\nb/c", 1, "Production", actor="me")
    assert seen == ["/api/v1/models/a%0Ab%2Fc/versions/1/transitions"]
