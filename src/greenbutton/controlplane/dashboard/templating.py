"""Rendering the dashboard's templates (Jinja2, autoescaped) with its security headers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

SECURITY_HEADERS = {
    # no inline script or style: data reaches the scripts through data-* attributes
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@cache
def templates() -> Environment:
    """The template environment, built on first use (importing this module does no work)."""
    env = Environment(
        loader=PackageLoader("greenbutton.controlplane.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    return env


def when(value: datetime | str | float | None) -> str:
    """A moment as ``YYYY-MM-DD HH:MM:SS UTC`` (ISO strings and epoch seconds accepted)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, tz=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(name: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """One page, with the security headers every dashboard page carries."""
    html = templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
