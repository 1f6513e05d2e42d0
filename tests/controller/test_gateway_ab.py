"""The gateway's A/B features: sticky assignment by header, shadow copies, version header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenbutton.config import Settings
from greenbutton.controller.reconcile import Backend
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controlplane.gateway import create_gateway

A, B, SHADOW = (Backend(1, "http://v1", 80), Backend(2, "http://v2", 20),
                Backend(3, "http://v3", 0, 100))


async def open_gateway(
    routes: RouteTable, settings: Settings, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[httpx.AsyncClient]:
    gateway = create_gateway(routes, settings, transport=transport)
    async with gateway.router.lifespan_context(gateway):
        transport_in = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport_in, base_url="http://gw") as client:
            yield client


def recording_app(seen: list[tuple[str, str]]) -> Starlette:
    """An upstream that records (host, shadow header) of every request it gets."""

    async def record(request: Request) -> Response:
        seen.append((request.url.netloc, request.headers.get("x-greenbutton-shadow", "")))
        if request.url.netloc == "v3":
            return JSONResponse({"error": "shadow answers are discarded"}, status_code=500)
        return JSONResponse({"host": request.url.netloc})

    return Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])


async def test_sticky_header_pins_caller_to_one_version(settings: Settings) -> None:
    routes = RouteTable()
    routes.switch("wine", (A, B))
    routes.set_sticky_header("wine", "X-User")
    seen: list[tuple[str, str]] = []
    async for client in open_gateway(routes, settings, httpx.ASGITransport(recording_app(seen))):
        versions = {(await client.post("/wine/predict", headers={"x-user": "u-7"}))
                    .headers["x-greenbutton-version"] for _ in range(20)}
        spread = {(await client.post("/wine/predict")).headers["x-greenbutton-version"]
                  for _ in range(60)}
    assert len(versions) == 1
    assert spread == {"1", "2"}


async def test_shadow_gets_copy_and_caller_gets_routed_answer(settings: Settings) -> None:
    routes = RouteTable()
    routes.switch("wine", (Backend(1, "http://v1", 100), SHADOW))
    seen: list[tuple[str, str]] = []
    async for client in open_gateway(routes, settings, httpx.ASGITransport(recording_app(seen))):
        response = await client.post("/wine/predict", json={"x": 1})
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    assert response.status_code == 200
    assert response.headers["x-greenbutton-version"] == "1"
    assert sorted(seen) == [("v1", ""), ("v3", "1")]


async def test_feedback_reaches_the_variant_that_answered(settings: Settings) -> None:
    routes = RouteTable()
    routes.switch("wine", (A, B))
    seen: list[tuple[str, str]] = []
    async for client in open_gateway(routes, settings, httpx.ASGITransport(recording_app(seen))):
        for i in range(20):
            answered = await client.post("/wine/predict", headers={"x-request-id": f"r{i}"})
            feedback = await client.post("/wine/feedback", json={"request_id": f"r{i}",
                                                                 "reward": -1.0})
            assert (feedback.headers["x-greenbutton-version"]
                    == answered.headers["x-greenbutton-version"])
