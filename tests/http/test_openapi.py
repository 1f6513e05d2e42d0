"""GET /openapi.json and /docs (Swagger UI served from local files)."""

from __future__ import annotations

import re

import httpx

PIXELS = [f"pixel_{i}" for i in range(64)]


async def test_openapi_describes_predict_request_from_signature(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    assert list(schemas["PredictRowObject"]["properties"]) == PIXELS
    assert len(schemas["PredictRowArray"]["prefixItems"]) == 64
    predict = document["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["example"]["inputs"]
    assert {"/invocations", "/health/ready", "/metrics"} <= set(document["paths"])
    assert "Error" in schemas


async def test_docs_serves_swagger_ui_assets_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    assert all(asset.startswith("docs/static/") for asset in assets)  # relative: works behind
    for asset in assets:                                               # the gateway's prefix
        response = await client.get(f"/{asset}")
        assert response.status_code == 200, asset
