"""``ControlPlaneClient``: the control-plane HTTP API from Python (used by the CLI and demos)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from .errors import HTTP_STATUS, AlreadyExists, GreenbuttonError, InvalidInput

API = "/api/v1"


class ControlPlaneUnreachable(GreenbuttonError):
    """Nothing answers at the control-plane URL."""


# HTTP status -> the general error class (409 is ambiguous: Conflict is the general one).
_BY_STATUS = {status: cls for cls, status in HTTP_STATUS.items() if cls is not AlreadyExists}


class ControlPlaneClient:
    """Typed calls to a running ``greenbutton up``; API errors come back as GreenbuttonError."""

    def __init__(self, url: str, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport,
                                  headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ControlPlaneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        """The control plane's own health."""
        return dict(self._call("GET", f"{API}/health"))

    def models(self) -> list[dict[str, Any]]:
        """Registered models with their stages."""
        return list(self._call("GET", f"{API}/models")["models"])

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Versions of one model with their stages."""
        return list(self._call("GET", f"{API}/models/{segment(name)}/versions")["versions"])

    def transition(self, name: str, ref: str | int, stage: str, *, actor: str,
                   reason: str | None = None) -> list[dict[str, Any]]:
        """Move a version (number, ``latest``, ``staging``…) to ``stage``; returns transitions
        (none yet when the request awaits another approver: see :meth:`move`)."""
        return list(self.move(name, ref, stage, actor=actor, reason=reason)["transitions"])

    def move(self, name: str, ref: str | int, stage: str, *, actor: str,
             reason: str | None = None) -> dict[str, Any]:
        """The green button: ``{"request": …, "transitions": […]}``; with four-eyes the
        request is pending and there are no transitions yet."""
        body = {"stage": stage, "actor": actor, "reason": reason}
        path = f"{API}/models/{segment(name)}/versions/{segment(ref)}/transitions"
        return dict(self._call("POST", path, json=body))

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every transition of a model, oldest first."""
        return list(self._call("GET", f"{API}/models/{segment(name)}/transitions")["transitions"])

    def integrity(self) -> dict[str, Any]:
        """What the control plane's lifecycle guard found (see ``GET /api/v1/integrity``)."""
        return dict(self._call("GET", f"{API}/integrity"))

    def deployments(self) -> list[dict[str, Any]]:
        """What the controller runs, with state, version and stable URL."""
        return list(self._call("GET", f"{API}/deployments")["deployments"])

    def put_spec(self, name: str, spec: dict[str, Any], *, actor: str,
                 expected_revision: int | None = None) -> dict[str, Any]:
        """Store a deployment spec (routes, shadow, replicas…); the controller applies it."""
        body = {"spec": spec, "actor": actor, "expected_revision": expected_revision}
        return dict(self._call("PUT", f"{API}/deployments/{segment(name)}/spec", json=body))

    def get_spec(self, name: str) -> dict[str, Any]:
        """A deployment's stored (or default) spec."""
        return dict(self._call("GET", f"{API}/deployments/{segment(name)}/spec"))

    def rollback(self, name: str, *, actor: str, reason: str | None = None) -> list[dict[str, Any]]:
        """Put the previous Production version back; returns the transitions."""
        body = {"actor": actor, "reason": reason}
        path = f"{API}/models/{segment(name)}/rollback"
        return list(self._call("POST", path, json=body)["transitions"])

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.InvalidURL, httpx.LocalProtocolError) as error:
            raise InvalidInput(f"cannot send this request: {error}") from error
        except httpx.TransportError as error:
            raise ControlPlaneUnreachable(
                f"cannot reach the control plane at {self.url} ({error.__class__.__name__}); "
                "is `greenbutton up` running?"
            ) from error
        if response.is_success:
            return response.json()
        raise _error_from(response)


def segment(value: str | int) -> str:
    """One path segment: every character but unreserved ones escaped (``/``, newlines…)."""
    return quote(str(value), safe="")


def _error_from(response: httpx.Response) -> GreenbuttonError:
    try:
        error = response.json()["error"]
        message, field = str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        message, field = f"HTTP {response.status_code}: {response.text[:200]}", None
    cls = _BY_STATUS.get(response.status_code, GreenbuttonError)
    return cls(message, field=field)
