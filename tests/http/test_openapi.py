"""GET /openapi.json and /docs (Swagger UI served from local files)."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.openapi import build_openapi

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


async def test_openapi_lists_every_route_and_its_security(
        settings: Settings, dataplane: DataPlane) -> None:
    from greenbutton.dataplane.auth import EndpointAuthority

    secured = settings.listening(serving_host="0.0.0.0")
    authority = EndpointAuthority(httpx.AsyncClient(base_url="http://127.0.0.1:9"), 2.0)
    app = create_app(secured, dataplane, extra_routes=[
        Route("/feedback", lambda request: None, methods=["POST"]),
        Route("/monitoring", lambda request: None, methods=["GET"])], authority=authority)
    document = build_openapi(dataplane, app.routes, is_auth_required=True)
    paths = document["paths"]
    routed = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route)
              for m in (r.methods or set()) - {"HEAD"}} - {("/openapi.json", "get"),
                                                           ("/docs", "get")}
    assert routed <= {(p, m) for p, ops in paths.items() for m in ops}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    assert paths["/health/ready"]["get"]["security"] == []
    assert "security" not in paths["/predict"]["post"]  # the document's: a token
    infer = paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    assert infer["application/json"]["schema"]["$ref"].endswith("V2InferRequest")
