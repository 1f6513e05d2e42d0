"""Request-path security and limits: media types, Host/Origin, concurrency, row counts."""

from __future__ import annotations

import asyncio

import httpx
import pandas as pd
from starlette.applications import Starlette

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane


async def test_pickle_body_refused_415(client: httpx.AsyncClient) -> None:
    for path in ("/invocations", "/predict", "/v2/models/digits/infer", "/anything"):
        response = await client.post(path, content=b"\x80\x04",
                                     headers={"content-type": "application/octet-stream"})
        assert response.status_code == 415, path


async def test_foreign_host_refused(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as client:
        assert (await client.get("/health/live")).status_code == 400


async def test_cross_origin_write_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", json={"inputs": []},
                                 headers={"origin": "http://evil.example"})
    assert response.status_code == 403


async def test_over_concurrency_limit_answered_503_with_retry_after(
    settings: Settings, dataplane: DataPlane
) -> None:
    limited = settings.serving.model_copy(update={"max_concurrency": 1})
    dataplane.settings = limited
    app = create_app(settings, dataplane)
    # hold the one slot with a request whose body never finishes arriving
    gate = asyncio.Event()

    async def slow_receive() -> dict[str, object]:
        await gate.wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [
        (b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80),
        "http_version": "1.1", "app": app}
    holder = asyncio.create_task(app(scope, slow_receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post("/predict", json={"inputs": []})
        assert response.status_code == 503
        assert response.headers["retry-after"]
        metrics = (await client.get("/metrics")).text
    assert 'greenbutton_limit_rejections_total{limit="concurrency"} 1.0' in metrics
    gate.set()
    await asyncio.wait_for(holder, 5)


async def test_too_many_rows_counted(settings: Settings, dataplane: DataPlane,
                                     digits_frame: pd.DataFrame) -> None:
    dataplane.settings = settings.serving.model_copy(update={"max_rows": 2})
    transport = httpx.ASGITransport(app=create_app(settings, dataplane))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        split = digits_frame[:3].to_dict(orient="split")
        response = await client.post("/invocations", json={"dataframe_split": split})
        assert response.status_code == 413
        metrics = (await client.get("/metrics")).text
    assert 'greenbutton_limit_rejections_total{limit="rows"} 1.0' in metrics


async def _status_with_host(app: Starlette, host: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return (await client.get("/health/live", headers={"host": host})).status_code


async def test_pod_addresses_and_service_names_accepted_when_bound_beyond_loopback(
    settings: Settings, dataplane: DataPlane
) -> None:
    serving = settings.serving.model_copy(update={
        "host": "0.0.0.0", "allowed_hosts": "wine-v3,wine-v3.ml.svc,*.example.com",
        "pod_ips": "10.1.2.3,fd00::17"})
    app = create_app(settings.model_copy(update={"serving": serving}), dataplane)
    for host in ("10.1.2.3:8080", "[fd00::17]:8080", "[FD00::17]", "wine-v3", "wine-v3:80",
                 "WINE-V3.ml.svc", "a.example.com", "127.0.0.1:8080", "localhost"):
        assert await _status_with_host(app, host) == 200, host
    for host in ("10.1.2.4:8080", "[fd00::18]:8080", "wine-v4", "example.com", "[fd00", ""):
        assert await _status_with_host(app, host) == 400, host


async def test_any_host_accepted_beyond_loopback_when_none_configured(
    settings: Settings, dataplane: DataPlane
) -> None:
    serving = settings.serving.model_copy(update={"host": "0.0.0.0"})
    app = create_app(settings.model_copy(update={"serving": serving}), dataplane)
    assert await _status_with_host(app, "anything.example:8080") == 200
