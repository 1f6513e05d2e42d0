"""Endpoint auth on a real serving app: invoke needs a token with ``invoke`` on the model;
health stays open; revocation reaches the running endpoint within 5 s."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from greenbutton.config import Settings
from greenbutton.governance.access import Access
from greenbutton.serving.app import create_app
from greenbutton.serving.dataplane import DataPlane
from greenbutton.store.governance_sql import open_governance_store

MODEL = "digits"  # what the root conftest's data plane serves


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[str, dict[str, str], Access]:
    """A store with one token per role, plus a viewer holding ``invoke`` on digits."""
    uri = f"sqlite:///{tmp_path / 'auth' / 'gb.db'}"
    access = Access(open_governance_store(uri))
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
async def endpoint(tmp_path: Path, tokens: tuple[str, dict[str, str], Access],
                   dataplane: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    """The serving app with endpoint auth on, checking tokens against the store."""
    settings = Settings(home=tmp_path / "gb", store={"uri": tokens[0]},  # type: ignore[arg-type]
                        auth={"is_endpoint_auth_enabled": True},
                        _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings, dataplane)
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
    other = Access(open_governance_store(uri))  # another process's view, e.g. the control plane
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
