"""``GovernanceClient``: the governance API from Python (CLI, demos, tests)."""

from __future__ import annotations

from typing import Any

from ..client import API, ControlPlaneClient
from ..client import segment as _seg


class GovernanceClient(ControlPlaneClient):
    """Proposals, approvals, principals, tokens, grants and the audit log over HTTP."""

    def __enter__(self) -> GovernanceClient:
        return self

    def whoami(self) -> dict[str, Any]:
        """The caller's name and role."""
        return dict(self._call("GET", f"{API}/whoami"))

    def promote(self, name: str, ref: str | int, stage: str = "Production",
                reason: str | None = None) -> dict[str, Any]:
        """The green button: ``{"request": …, "transitions": […]}`` (no transitions yet when
        another approver is needed)."""
        return self.move(name, ref, stage, actor="-", reason=reason)

    def propose(self, name: str, ref: str | int, stage: str = "Production",
                reason: str | None = None) -> dict[str, Any]:
        """A transition request, with its gate results."""
        path = f"{API}/models/{_seg(name)}/versions/{_seg(ref)}/requests"
        return dict(self._call("POST", path, json={"stage": stage, "reason": reason})["request"])

    def decide(self, request_id: int, decision: str, reason: str | None = None) -> dict[str, Any]:
        """``approve``, ``reject`` or ``override`` a request."""
        path = f"{API}/requests/{int(request_id)}/{_seg(decision)}"
        return dict(self._call("POST", path, json={"reason": reason}))

    def requests(self, model: str | None = None, status: str | None = None) -> list[Any]:
        """Requests the caller may read, newest first."""
        params = {k: v for k, v in (("model", model), ("status", status)) if v}
        return list(self._call("GET", f"{API}/requests", params=params)["requests"])

    def gates(self, name: str, ref: str | int) -> list[Any]:
        """Gate results stored for a version."""
        path = f"{API}/models/{_seg(name)}/versions/{_seg(ref)}/gates"
        return list(self._call("GET", path)["gates"])

    def set_four_eyes(self, name: str, four_eyes: bool) -> None:
        """A model's four-eyes policy."""
        self._call("PUT", f"{API}/models/{_seg(name)}/policy", json={"four_eyes": four_eyes})

    def create_principal(self, name: str, role: str, kind: str = "user") -> dict[str, Any]:
        """A new user or service account."""
        body = {"name": name, "role": role, "kind": kind}
        return dict(self._call("POST", f"{API}/principals", json=body))

    def principals(self) -> list[Any]:
        """Every principal."""
        return list(self._call("GET", f"{API}/principals")["principals"])

    def create_token(self, principal: str, label: str = "") -> dict[str, Any]:
        """A new token; ``["token"]`` is the secret, shown this once."""
        body = {"principal": principal, "label": label}
        return dict(self._call("POST", f"{API}/tokens", json=body))

    def tokens(self, principal: str | None = None) -> list[Any]:
        """Tokens' public facts."""
        params = {"principal": principal} if principal else {}
        return list(self._call("GET", f"{API}/tokens", params=params)["tokens"])

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token."""
        self._call("POST", f"{API}/tokens/{_seg(token_id)}/revoke", json={})

    def grant(self, principal: str, model: str, permission: str, *,
              is_granted: bool = True) -> None:
        """Grant (or with ``is_granted=False`` revoke) a per-model permission."""
        path = f"{API}/grants" if is_granted else f"{API}/grants/revoke"
        body = {"principal": principal, "model": model, "permission": permission}
        self._call("POST", path, json=body)

    def grants(self, principal: str | None = None) -> list[Any]:
        """Per-model grants."""
        params = {"principal": principal} if principal else {}
        return list(self._call("GET", f"{API}/grants", params=params)["grants"])

    def audit(self, after: int = 0, limit: int = 1000) -> list[Any]:
        """Audit entries after sequence number ``after``."""
        params = {"after": after, "limit": limit}
        return list(self._call("GET", f"{API}/audit", params=params)["entries"])

    def audit_verify(self, heads: list[str] | None = None) -> dict[str, Any]:
        """The server's check of the log (chain, seal, anchors; ``heads``: ``SEQ:HASH``)."""
        params = [("head", head) for head in heads or []]
        return dict(self._call("GET", f"{API}/audit/verify", params=params))
