"""The gateway as an app: stable URL → routed backend, with limits, errors and retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenbutton.config import Settings
from greenbutton.controller.reconcile import Backend
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controlplane.gateway import create_gateway

BACKEND = Backend(1, "http://backend-one")


def echo_app(gate: asyncio.Event | None = None) -> Starlette:
    """An upstream that echoes what reached it."""

    async def echo(request: Request) -> Response:
        if gate is not None:
            await gate.wait()
        return JSONResponse({
            "host": request.url.netloc,
            "path": request.url.path,
            "query": request.url.query,
            "body": (await request.body()).decode(),
            "headers": dict(request.headers),
        }, headers={"set-cookie": "session=secret; Path=/", "connection": "x-upstream-private",
                    "x-upstream-private": "1"})

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


async def open_gateway(
    routes: RouteTable, settings: Settings, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[httpx.AsyncClient]:
    gateway = create_gateway(routes, settings, transport=transport)
    async with gateway.router.lifespan_context(gateway):
        transport_in = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport_in, base_url="http://gw") as client:
            yield client


@pytest.fixture
def routes() -> RouteTable:
    table = RouteTable()
    table.switch("digits", (BACKEND,))
    table.mark_loaded()  # as the controller's first pass does
    return table


@pytest.fixture
async def client(routes: RouteTable, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_gateway(routes, settings, httpx.ASGITransport(app=echo_app())):
        yield client


async def test_proxy_forwards_path_query_and_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/digits/predict?explain=1", content=b'{"x": 1}')
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["host"], echoed["path"], echoed["query"], echoed["body"]) == (
        "backend-one", "/predict", "explain=1", '{"x": 1}'
    )


async def test_proxy_marks_response_with_deployment_and_version(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/digits/predict", content=b"{}")
    assert response.headers["x-greenbutton-deployment"] == "digits"
    assert response.headers["x-greenbutton-version"] == "1"


async def test_proxy_unknown_deployment_returns_404_error_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/iris/predict", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "deployment_not_found"


async def test_proxy_before_routes_are_loaded_returns_503_with_retry_after(
    settings: Settings,
) -> None:
    async for client in open_gateway(RouteTable(), settings,
                                     httpx.ASGITransport(app=echo_app())):
        response = await client.post("/digits/predict", content=b"{}")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["type"] == "not_ready"


async def test_proxy_no_ready_backend_returns_503_with_retry_after(
    client: httpx.AsyncClient, routes: RouteTable
) -> None:
    routes.switch("digits", ())
    response = await client.post("/digits/predict", content=b"{}")
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()


@pytest.mark.parametrize(
    "raw_path",
    [b"/digits/%2e%2e/admin", b"/digits/a/%2E%2E/%2e%2e/x", b"/digits/%252e%252e/x",
     b"/digits/a%5cb", b"/digits/a%00b", b"/digits/a//b"],
)
async def test_proxy_traversal_path_is_rejected(client: httpx.AsyncClient, raw_path: bytes) -> None:
    response = await client.get(httpx.URL("http://gw").copy_with(raw_path=raw_path))
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_input"


async def test_proxy_traversal_in_deployment_name_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.get(httpx.URL("http://gw").copy_with(raw_path=b"/..%2fetc/passwd"))
    assert response.status_code == 404


async def test_proxy_oversized_body_returns_413(
    routes: RouteTable, settings: Settings
) -> None:
    small = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"max_body_bytes": 10})}
    )
    async for client in open_gateway(routes, small, httpx.ASGITransport(app=echo_app())):
        response = await client.post("/digits/predict", content=b"x" * 11)
        assert response.status_code == 413


async def test_proxy_drops_hop_by_hop_and_spoofed_forwarding_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/digits/predict",
        content=b"{}",
        headers={"connection": "x-private", "x-private": "1", "x-forwarded-for": "10.9.9.9"},
    )
    sent = response.json()["headers"]
    assert "x-private" not in sent
    assert sent["x-forwarded-for"] != "10.9.9.9"
    assert "x-upstream-private" not in response.headers


async def test_proxy_does_not_share_cookies_between_callers(client: httpx.AsyncClient) -> None:
    await client.post("/digits/login", content=b"{}")
    client.cookies.clear()
    response = await client.post("/digits/predict", content=b"{}")
    assert "cookie" not in response.json()["headers"]


async def test_proxy_counts_request_in_flight_until_answered(
    routes: RouteTable, settings: Settings
) -> None:
    gate = asyncio.Event()
    async for client in open_gateway(routes, settings, httpx.ASGITransport(app=echo_app(gate))):
        request = asyncio.create_task(client.post("/digits/predict", content=b"{}"))
        await asyncio.sleep(0.05)
        assert routes.in_flight(BACKEND.url) == 1
        gate.set()
        assert (await request).status_code == 200
        assert routes.in_flight(BACKEND.url) == 0


async def test_proxy_connect_error_retries_on_switched_backend(
    routes: RouteTable, settings: Settings
) -> None:
    new = Backend(2, "http://backend-two")

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "backend-one":  # switched away while the request was on its way
            routes.switch("digits", (new,))
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, stream=httpx.ByteStream(b'{"version": 2}'))

    async for client in open_gateway(routes, settings, httpx.MockTransport(upstream)):
        response = await client.post("/digits/predict", content=b"{}")
        assert (response.status_code, response.json()) == (200, {"version": 2})
        assert routes.in_flight(BACKEND.url) == routes.in_flight(new.url) == 0


async def test_proxy_connect_error_without_other_backend_returns_503(
    routes: RouteTable, settings: Settings
) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async for client in open_gateway(routes, settings, httpx.MockTransport(upstream)):
        response = await client.post("/digits/predict", content=b"{}")
        assert response.status_code == 503
        assert routes.in_flight(BACKEND.url) == 0


async def test_proxy_upstream_timeout_returns_504(routes: RouteTable, settings: Settings) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async for client in open_gateway(routes, settings, httpx.MockTransport(upstream)):
        response = await client.post("/digits/predict", content=b"{}")
        assert response.status_code == 504
