"""``Access``: authenticate tokens, authorise actions, manage principals, tokens and grants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import InvalidInput, NotFound, PermissionDenied, StaleState, Unauthenticated
from ..store.governance_records import AuditEvent, Grant, Principal, TokenInfo
from ..store.governance_sql import SqlGovernanceStore
from .permissions import (
    Action,
    Permission,
    Resource,
    Role,
    effective_permissions,
    parse_permission,
    parse_role,
    require,
)
from .tokens import hash_secret, new_token

KINDS = frozenset({"user", "service"})
MAX_NAME = 200


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and the token it used."""

    name: str
    role: str
    token_id: str


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: the secret is shown this once and never again."""

    info: TokenInfo
    secret: str


class Access:
    """Identity and authorisation over the governance store.

    Usage::

        access = Access(store)
        caller = access.authenticate(secret)
        access.authorize(caller, Resource.REQUEST, Action.APPROVE, model="digits")
    """

    def __init__(self, store: SqlGovernanceStore, *, token_ttl_days: int | None = 90) -> None:
        self.store = store
        self._token_ttl_days = token_ttl_days

    def authenticate(self, secret: str | None) -> Caller:
        """The caller behind a bearer secret; ``Unauthenticated`` when missing or not live."""
        if not secret:
            raise Unauthenticated("a bearer token is required")
        found = self.store.principal_for_secret(hash_secret(secret))
        if found is None:
            raise Unauthenticated("token unknown, expired or revoked")
        principal, token_id = found
        return Caller(principal.name, principal.role, token_id)

    def is_allowed_to(self, caller: Caller, resource: Resource, action: Action,
                      model: str | None = None) -> bool:
        """Whether ``caller`` may do it (per-model grants counted when ``model`` is given)."""
        try:
            self.authorize(caller, resource, action, model=model)
        except PermissionDenied:
            return False
        return True

    def authorize(self, caller: Caller, resource: Resource, action: Action,
                  model: str | None = None) -> None:
        """``PermissionDenied`` unless the table allows it."""
        granted = self.store.permissions_on(caller.name, model) if model is not None else ()
        require(resource, action, caller.role, granted, who=repr(caller.name))

    def holds(self, caller: Caller, model: str) -> frozenset[Permission]:
        """Every permission ``caller`` holds on ``model``."""
        return effective_permissions(caller.role, self.store.permissions_on(caller.name, model))

    def create_principal(self, caller: Caller, name: str, role: str,
                         kind: str = "user") -> Principal:
        """A new user or service account (admin only)."""
        require(Resource.PRINCIPAL, Action.CREATE, caller.role, who=repr(caller.name))
        return self._create(caller.name, check_name(name, "name"), parse_role(role).value, kind)

    def bootstrap_admin(self, name: str = "admin") -> IssuedToken | None:
        """On a platform with no principals, create an admin and its first token."""
        if self.store.count_principals():
            return None
        try:
            self._create("greenbutton", name, Role.ADMIN.value, "user")
        except StaleState:  # another replica starting at the same moment created it
            return None
        return self._issue("greenbutton", name, "bootstrap")

    def issue_token(self, caller: Caller, principal: str, label: str = "") -> IssuedToken:
        """A new token for ``principal`` (admin only)."""
        require(Resource.TOKEN, Action.CREATE, caller.role, who=repr(caller.name))
        if self.store.get_principal(principal) is None:
            raise NotFound(f"no principal {principal!r}", field="principal")
        return self._issue(caller.name, principal, label[:MAX_NAME])

    def revoke_token(self, caller: Caller, token_id: str) -> None:
        """Revoke a token: its owner or an admin may."""
        owned = {t.token_id for t in self.store.list_tokens(caller.name)}
        if token_id not in owned:
            require(Resource.TOKEN, Action.REVOKE, caller.role, who=repr(caller.name))
        event = AuditEvent(caller.name, "token.revoke", f"token:{token_id}")
        self.store.revoke_token(token_id, events=[event])

    def list_tokens(self, caller: Caller, principal: str | None = None) -> list[TokenInfo]:
        """Tokens' public facts: one's own, or anyone's for an admin."""
        if principal != caller.name:
            require(Resource.TOKEN, Action.READ, caller.role, who=repr(caller.name))
        return self.store.list_tokens(principal)

    def change_grant(self, caller: Caller, principal: str, model: str, permission: str,
                     *, is_granted: bool) -> None:
        """Grant or revoke a per-model permission (needs ``manage`` on the model)."""
        self.authorize(caller, Resource.GRANT, Action.CHANGE, model=model)
        wanted = parse_permission(permission).value
        if self.store.get_principal(principal) is None:
            raise NotFound(f"no principal {principal!r}", field="principal")
        action = "grant.add" if is_granted else "grant.remove"
        event = AuditEvent(caller.name, action, f"model:{model}",
                           after={"principal": principal, "permission": wanted})
        if is_granted:
            self.store.grant(principal, model, wanted, by=caller.name, events=[event])
        elif not self.store.revoke_grant(principal, model, wanted, events=[event]):
            raise NotFound(f"{principal!r} holds no {wanted!r} grant on {model!r}")

    def list_grants(self, caller: Caller, principal: str | None = None) -> list[Grant]:
        """Grants: one's own, or anyone's for an admin."""
        if principal != caller.name:
            require(Resource.GRANT, Action.READ, caller.role, who=repr(caller.name))
        return self.store.list_grants(principal)

    def list_principals(self, caller: Caller) -> list[Principal]:
        """Every principal (admin only)."""
        require(Resource.PRINCIPAL, Action.READ, caller.role, who=repr(caller.name))
        return self.store.list_principals()

    def _create(self, by: str, name: str, role: str, kind: str) -> Principal:
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {sorted(KINDS)}", field="kind")
        event = AuditEvent(by, "principal.create", f"principal:{name}",
                           after={"role": role, "kind": kind})
        return self.store.create_principal(name, kind, role, by=by, events=[event])

    def _issue(self, by: str, principal: str, label: str) -> IssuedToken:
        token_id, secret = new_token()
        expires = None
        if self._token_ttl_days is not None:
            expires = self.store.clock() + timedelta(days=self._token_ttl_days)
        event = AuditEvent(by, "token.create", f"principal:{principal}",
                           after={"token_id": token_id, "label": label,
                                  "expires_at": _iso(expires)})
        info = self.store.add_token(principal, token_id, hash_secret(secret), label, expires,
                                    events=[event])
        return IssuedToken(info, secret)


def check_name(value: str, field: str) -> str:
    """A principal name: 1–200 printable characters, stored verbatim (422 otherwise)."""
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidInput(f"{field} must be 1-{MAX_NAME} printable characters", field=field)
    return value


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
