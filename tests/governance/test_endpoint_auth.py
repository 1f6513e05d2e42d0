"""Endpoint auth on a real serving app: invoke needs a token with ``invoke`` on the model,
decided by the control plane (the serving process cannot read the store); health stays open;
revocation reaches the running endpoint within 5 s; no verdict is guessed when the control
plane cannot be asked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from control_plane import in_process_control_plane
from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.auth import EndpointAuthority
from greenbutton.dataplane.core import DataPlane
from greenbutton.governance.access import Access
from greenbutton.registry import Registry
from greenbutton.store import open_store

MODEL = "digits"  # what the root conftest's data plane serves


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[str, dict[str, str], Access]:
    """A store with one token per role, plus a viewer holding ``invoke`` on digits."""
    uri = f"sqlite:///{tmp_path / 'auth' / 'gb.db'}"
    access = Access(open_store(uri).governance_store())
    admin_token = access.bootstrap_admin()
    assert admin_token is not None
    admin = access.authenticate(admin_token.secret)
    secrets = {"admin": admin_token.secret}
    for role in ("maintainer", "data-scientist", "viewer"):
        access.create_principal(admin, role, role)
        secrets[role] = access.issue_token(admin, role).secret
    access.create_principal(admin, "shop", "viewer", kind="service")
    access.change_grant(admin, "shop", MODEL, "invoke", is_granted=True)
    secrets["viewer+invoke"] = access.issue_token(admin, "shop").secret
    access.create_principal(admin, "other", "viewer", kind="service")
    access.change_grant(admin, "other", "another-model", "invoke", is_granted=True)
    secrets["invoke on another model"] = access.issue_token(admin, "other").secret
    return uri, secrets, access


@pytest.fixture
async def control_plane(tmp_path: Path, tokens: tuple[str, dict[str, str], Access],
                        shared_mlflow: MlflowClient) -> AsyncIterator[httpx.AsyncClient]:
    """The control plane the serving process asks (in process, over ASGI)."""
    settings = Settings(home=tmp_path / "cp", store={"uri": tokens[0]},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    store = open_store(tokens[0])
    async with in_process_control_plane(settings, store, Registry(shared_mlflow, store),
                                        is_signed_in=False) as found:
        yield found.client
    store.close()


@pytest.fixture
async def endpoint(tmp_path: Path, control_plane: httpx.AsyncClient,
                   dataplane: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    """The serving app with endpoint auth on; tokens are checked by the control plane."""
    settings = Settings(home=tmp_path / "gb", auth={"is_endpoint_auth_enabled": True},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    authority = EndpointAuthority(control_plane, settings.auth.token_cache_ttl_s)
    app = create_app(settings, dataplane, authority=authority)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def body(digits_frame: pd.DataFrame) -> dict[str, object]:
    """One row to predict."""
    return {"inputs": digits_frame.head(1).to_dict(orient="records")}


@pytest.mark.parametrize(("who", "expected"), [
    ("admin", 200), ("maintainer", 200), ("viewer+invoke", 200), ("data-scientist", 403),
    ("viewer", 403), ("invoke on another model", 403), ("anonymous", 401), ("garbage", 401),
])
async def test_invoke_matrix(endpoint: httpx.AsyncClient, tokens: tuple[str, dict[str, str],
                             Access], digits_frame: pd.DataFrame, who: str,
                             expected: int) -> None:
    secrets = {**tokens[1], "garbage": "gb_not-a-token"}
    headers = {} if who == "anonymous" else {"Authorization": f"Bearer {secrets[who]}"}
    response = await endpoint.post("/predict", json=body(digits_frame), headers=headers)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_health_needs_no_token(endpoint: httpx.AsyncClient) -> None:
    assert (await endpoint.get("/health/live")).status_code == 200
    assert (await endpoint.get("/metrics")).status_code == 401


async def test_revoked_token_fails_within_5_s(
        endpoint: httpx.AsyncClient, tokens: tuple[str, dict[str, str], Access],
        digits_frame: pd.DataFrame) -> None:
    uri, secrets, _ = tokens
    headers = {"Authorization": f"Bearer {secrets['viewer+invoke']}"}
    assert (await endpoint.post("/predict", json=body(digits_frame),
                                headers=headers)).status_code == 200
    other = Access(open_store(uri).governance_store())  # another process's view
    admin = other.authenticate(secrets["admin"])
    (token,) = other.list_tokens(admin, "shop")
    other.revoke_token(admin, token.token_id)
    revoked_at = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - revoked_at < 5.0:
        status = (await endpoint.post("/predict", json=body(digits_frame),
                                      headers=headers)).status_code
    latency_s = time.monotonic() - revoked_at
    assert status == 401, f"still accepted {latency_s:.2f} s after revocation"
    assert latency_s < 5.0


async def test_revoked_permission_fails_within_5_s(
        endpoint: httpx.AsyncClient, tokens: tuple[str, dict[str, str], Access],
        digits_frame: pd.DataFrame) -> None:
    uri, secrets, access = tokens
    headers = {"Authorization": f"Bearer {secrets['viewer+invoke']}"}
    assert (await endpoint.post("/predict", json=body(digits_frame),
                                headers=headers)).status_code == 200
    admin = access.authenticate(secrets["admin"])
    access.change_grant(admin, "shop", MODEL, "invoke", is_granted=False)
    started, status = time.monotonic(), 200
    while status == 200 and time.monotonic() - started < 5.0:
        status = (await endpoint.post("/predict", json=body(digits_frame),
                                      headers=headers)).status_code
    assert status == 403


async def test_token_does_not_reach_the_model(control_plane: httpx.AsyncClient,
                                              tokens: tuple[str, dict[str, str], Access],
                                              tmp_path: Path, dataplane: DataPlane) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo_headers(request: Request) -> JSONResponse:
        return JSONResponse({"authorization": request.headers.get("authorization")})

    settings = Settings(home=tmp_path / "gb", auth={"is_endpoint_auth_enabled": True},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, dataplane, extra_routes=[Route("/seen", echo_headers)],
                     authority=EndpointAuthority(control_plane, 2.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        answer = await client.get("/seen", headers={
            "Authorization": f"Bearer {tokens[1]['admin']}"})
    assert answer.status_code == 200 and answer.json() == {"authorization": None}


async def test_unreachable_control_plane_is_503_not_a_verdict(
        tmp_path: Path, dataplane: DataPlane, tokens: tuple[str, dict[str, str], Access],
        digits_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "gb", auth={"is_endpoint_auth_enabled": True},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    nowhere = httpx.AsyncClient(base_url="http://127.0.0.1:9", trust_env=False)
    app = create_app(settings, dataplane, authority=EndpointAuthority(nowhere, 2.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        answer = await client.post("/predict", json=body(digits_frame), headers={
            "Authorization": f"Bearer {tokens[1]['admin']}"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    await nowhere.aclose()
