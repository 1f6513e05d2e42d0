"""Sign-in with a token: kept in an HttpOnly, SameSite=Strict cookie, sent on as a bearer token.

Why a cookie and not ``sessionStorage``: the pages are rendered on the server, which must know
who asks in order to show only what they may read, and an HttpOnly cookie cannot be read by
any script (an injected one included). Cross-site use is closed three times over: the browser
never attaches a SameSite=Strict cookie to a request another site starts, the control plane
refuses cross-site writes (``Origin``/``Sec-Fetch-Site``), and every write must be JSON.

``CookieBearer`` copies the cookie into ``Authorization: Bearer …`` when a request has none, so
the API checks the dashboard's calls exactly as it checks the CLI's: one code path.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ...dataplane.encoding import JSON, media_type_of, parse_json, read_body
from ...errors import InvalidInput
from ..context import of
from .templating import render

COOKIE = "greenbutton_token"
MAX_BODY_BYTES = 8 * 1024
MAX_AGE_S = 12 * 3600
"""The browser forgets the token after a working day; the token itself lives on."""


class CookieBearer:
    """ASGI middleware: the session cookie becomes the bearer token (stable URLs excluded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/endpoints/"):
            headers = list(scope["headers"])
            names = {name for name, _ in headers}
            token = _cookie(headers)
            if token and b"authorization" not in names:
                headers.append((b"authorization", b"Bearer " + token.encode("latin-1")))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, found = part.strip().partition("=")
            if key == COOKIE and found.isascii() and found.isprintable():
                return found
    return None


def signin_redirect(request: Request) -> Response:
    """Send the browser to the sign-in page, coming back here afterwards."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(back, safe='/')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only a path on this server (no ``//host`` or scheme): no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def signin_page(request: Request) -> Response:
    """The token form."""
    return render("signin.html", {
        "page": "signin", "caller": None, "can_audit": False,
        "next": safe_next(request.query_params.get("next")),
    })


async def signin(request: Request) -> Response:
    """``POST /signin {"token": "…"}``: check the token, then set the cookie."""
    access = of(request).access
    media_type_of(request, frozenset({JSON}))
    body = parse_json(await read_body(request, MAX_BODY_BYTES))
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip() or not token.isascii():
        raise InvalidInput("token: a token is required", field="token")
    # an unknown, expired or revoked token raises Unauthenticated: 401 from the one table
    caller = await run_in_threadpool(access.authenticate, token.strip())
    response = JSONResponse({"name": caller.name, "role": caller.role})
    response.set_cookie(COOKIE, token.strip(), max_age=MAX_AGE_S, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


async def signout(request: Request) -> Response:
    """``POST /signout``: forget the cookie."""
    media_type_of(request, frozenset({JSON}))
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
