"""Who is looking at a page, and what they may do: the API's own checks, asked in advance.

Hiding a button is a courtesy; the API refuses the call anyway (``controlplane/auth.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...errors import GreenbuttonError, PermissionDenied, Unauthenticated, http_status_for
from ...governance.access import Caller
from ...governance.permissions import Action, Resource
from ..auth import authenticate
from ..context import of
from .session import signin_redirect
from .templating import render

Handler = Callable[[Any, Request], Awaitable[Response]]


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller and the checks already made."""

    caller: Caller
    can_audit: bool = False
    extra: dict[str, bool] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """What every page's header needs."""
        return {"caller": self.caller, "can_audit": self.can_audit}


async def can(request: Request, caller: Caller, resource: Resource, action: Action,
              model: str | None = None) -> bool:
    """Whether ``caller`` may do it."""
    return await run_in_threadpool(of(request).access.is_allowed_to, caller, resource, action,
                                   model)


async def viewer_of(request: Request) -> Viewer:
    """The caller (``Unauthenticated`` without a live token)."""
    caller = await authenticate(request)
    return Viewer(caller, await can(request, caller, Resource.AUDIT, Action.READ))


def page(handler: Handler) -> Handler:
    """A page handler: no token → the sign-in page; not allowed → a 403 page; any other
    greenbutton error → an error page with the API's status for it (404, 422, 503…)."""

    @wraps(handler)
    async def wrapped(self: Any, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Unauthenticated:
            return signin_redirect(request)
        except PermissionDenied as error:
            return _error_page("Not allowed", error, 403)
        except GreenbuttonError as error:
            status = http_status_for(error)
            return _error_page("Not found" if status == 404 else "Cannot show this page",
                               error, status)

    return wrapped


def _error_page(title: str, error: GreenbuttonError, status: int) -> Response:
    return render("error.html", {"page": "", "caller": None, "can_audit": False,
                                 "title": title,
                                 "message": error.message}, status=status)
