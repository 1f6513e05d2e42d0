"""The dashboard's pages over ASGI: rendered from the registry, MLflow and the controller."""

from __future__ import annotations

import httpx

API = "/api/v1"


async def test_models_page_lists_model_with_latest_version(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'href="/models/echo"' in response.text
    assert "v2" in response.text


async def test_pages_forbid_inline_script_and_framing(web: httpx.AsyncClient) -> None:
    response = await web.get("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in response.text


async def test_model_page_shows_run_params_and_buttons(web: httpx.AsyncClient) -> None:
    response = await web.get("/models/echo")
    assert response.status_code == 200
    assert "alpha" in response.text and "0.5" in response.text
    assert 'data-transition="Production"' in response.text


async def test_model_page_reflects_a_transition(web: httpx.AsyncClient) -> None:
    done = await web.post(f"{API}/models/echo/versions/1/transitions",
                          json={"stage": "Staging", "actor": "alice", "reason": "try <b>"})
    assert done.status_code == 201
    page = (await web.get("/models/echo")).text
    assert "stage-staging" in page and "admin" in page  # the caller, not the body's actor
    assert "try &lt;b&gt;" in page  # autoescaped


async def test_unknown_model_page_is_404_html(web: httpx.AsyncClient) -> None:
    response = await web.get("/models/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_unknown_deployment_page_is_404(web: httpx.AsyncClient) -> None:
    assert (await web.get("/deployments/nope")).status_code == 404
    assert (await web.get("/deployments/nope/live")).status_code == 404


async def test_deployments_page_renders_when_empty(web: httpx.AsyncClient) -> None:
    response = await web.get("/deployments")
    assert response.status_code == 200
    assert "Nothing is deployed" in response.text


async def test_static_assets_are_served_locally(web: httpx.AsyncClient) -> None:
    for asset in ("dashboard.css", "dashboard.js", "chart.js"):
        response = await web.get(f"/assets/{asset}")
        assert response.status_code == 200, asset
