"""GET /health/live and /health/ready."""

from __future__ import annotations

import httpx

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics


def client_for(settings: Settings, dataplane: DataPlane) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, dataplane))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_live_answers_while_model_loads(settings: Settings) -> None:
    async with client_for(settings, DataPlane(settings.serving, Metrics())) as client:
        response = await client.get("/health/live")
    assert response.status_code == 200


async def test_ready_before_load_returns_503(settings: Settings) -> None:
    async with client_for(settings, DataPlane(settings.serving, Metrics())) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "model_not_ready"
    assert "retry-after" in response.headers


async def test_ready_turns_200_after_warm_up(
    settings: Settings, served_digits: ServedModel
) -> None:
    dataplane = DataPlane(settings.serving, Metrics(), served_digits)
    async with client_for(settings, dataplane) as client:
        before = await client.get("/health/ready")
        await dataplane.warm_up()
        after = await client.get("/health/ready")
    assert before.status_code == 503
    assert after.status_code == 200
    assert after.json()["model"] == {"name": "digits", "version": "1"}


async def test_predict_before_load_returns_503(settings: Settings) -> None:
    async with client_for(settings, DataPlane(settings.serving, Metrics())) as client:
        response = await client.post("/predict", json={"inputs": [[0.0] * 64]})
    assert response.status_code == 503


async def test_ready_turns_503_when_draining(
    client: httpx.AsyncClient, dataplane: DataPlane
) -> None:
    dataplane.is_draining = True
    assert (await client.get("/health/ready")).status_code == 503
    assert (await client.get("/v2/health/ready")).status_code == 503
