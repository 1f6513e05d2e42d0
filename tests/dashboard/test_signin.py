"""Sign-in with a token, and what each role is shown and refused."""

from __future__ import annotations

from greenbutton.controlplane.dashboard.session import safe_next

from .conftest import Governed

TRANSITION = "/api/v1/models/echo/versions/1/transitions"


async def test_page_without_token_redirects_to_signin(governed: Governed) -> None:
    response = await governed.web.get("/models/echo")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/models/echo"


async def test_signin_with_unknown_token_is_401(governed: Governed) -> None:
    response = await governed.web.post("/signin", json={"token": "gb_nope"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


async def test_signin_sets_httponly_strict_cookie(governed: Governed) -> None:
    response = await governed.web.post("/signin", json={"token": governed.tokens["viewer"]})
    assert response.status_code == 200
    assert response.json() == {"name": "viewer", "role": "viewer"}
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


async def test_signin_from_another_site_is_refused(governed: Governed) -> None:
    response = await governed.web.post("/signin", json={"token": governed.tokens["admin"]},
                                       headers={"origin": "http://evil.example"})
    assert response.status_code == 403


async def test_signin_form_post_is_refused(governed: Governed) -> None:
    response = await governed.web.post("/signin", data={"token": governed.tokens["admin"]})
    assert response.status_code == 415


async def test_viewer_sees_disabled_buttons(governed: Governed) -> None:
    page = await governed.web.get("/models/echo", headers=governed.as_("viewer"))
    assert page.status_code == 200
    assert 'id="not-allowed"' in page.text
    assert 'data-transition="Production" disabled' in page.text


async def test_viewer_transition_is_refused_server_side(governed: Governed) -> None:
    response = await governed.web.post(TRANSITION, headers=governed.as_("viewer"),
                                       json={"stage": "Production", "actor": "viewer"})
    assert response.status_code == 403


async def test_maintainer_deploys_with_cookie(governed: Governed) -> None:
    page = await governed.web.get("/models/echo", headers=governed.as_("maintainer"))
    assert 'id="not-allowed"' not in page.text
    response = await governed.web.post(TRANSITION, headers=governed.as_("maintainer"),
                                       json={"stage": "Staging", "actor": "maintainer"})
    assert response.status_code == 201
    page = await governed.web.get("/models/echo", headers=governed.as_("maintainer"))
    assert "request-approved" in page.text


async def test_audit_page_needs_maintainer(governed: Governed) -> None:
    refused = await governed.web.get("/audit", headers=governed.as_("viewer"))
    assert refused.status_code == 403
    shown = await governed.web.get("/audit?action=principal.create",
                                   headers=governed.as_("admin"))
    assert shown.status_code == 200
    assert "Hash chain intact" in shown.text
    assert 'href="/audit"' in shown.text


async def test_live_json_without_token_is_401(governed: Governed) -> None:
    assert (await governed.web.get("/deployments/echo/live")).status_code == 401


def test_safe_next_refuses_other_hosts() -> None:
    assert safe_next("//evil.example/x") == "/"
    assert safe_next("https://evil.example") == "/"
    assert safe_next("/models/echo") == "/models/echo"
