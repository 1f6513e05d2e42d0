"""Who may do what: one table, ``(Resource, Action) -> Requirement``, checked in one place.

A requirement is either a minimum platform role, or a permission on the model named in the
request; a role also implies some permissions on every model (``ROLE_PERMISSIONS``), and
per-model grants add to them. As MLflow's auth plug-in maps each request type to one check.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from ..errors import InvalidInput, PermissionDenied


class Role(StrEnum):
    """Platform roles, weakest first."""

    VIEWER = "viewer"
    DATA_SCIENTIST = "data-scientist"
    MAINTAINER = "maintainer"
    ADMIN = "admin"


class Permission(StrEnum):
    """Per-registered-model permissions."""

    READ = "read"
    PROPOSE = "propose"
    APPROVE = "approve"
    DEPLOY = "deploy"
    INVOKE = "invoke"
    MANAGE = "manage"


class Resource(StrEnum):
    """What a request acts on."""

    MODEL = "model"
    REQUEST = "request"
    ENDPOINT = "endpoint"
    PRINCIPAL = "principal"
    TOKEN = "token"
    GRANT = "grant"
    POLICY = "policy"
    AUDIT = "audit"
    DEPLOYMENT = "deployment"


class Action(StrEnum):
    """What a request does."""

    READ = "read"
    PROPOSE = "propose"
    APPROVE = "approve"
    REJECT = "reject"
    OVERRIDE = "override"
    ARCHIVE = "archive"
    INVOKE = "invoke"
    CREATE = "create"
    REVOKE = "revoke"
    CHANGE = "change"
    VERIFY = "verify"


Requirement = Role | Permission

RULES: dict[tuple[Resource, Action], Requirement] = {
    (Resource.MODEL, Action.READ): Permission.READ,
    (Resource.MODEL, Action.ARCHIVE): Permission.DEPLOY,
    (Resource.REQUEST, Action.READ): Permission.READ,
    (Resource.REQUEST, Action.PROPOSE): Permission.PROPOSE,
    (Resource.REQUEST, Action.APPROVE): Permission.APPROVE,
    (Resource.REQUEST, Action.REJECT): Permission.APPROVE,
    (Resource.REQUEST, Action.OVERRIDE): Permission.MANAGE,
    (Resource.ENDPOINT, Action.INVOKE): Permission.INVOKE,
    (Resource.DEPLOYMENT, Action.READ): Permission.READ,
    (Resource.DEPLOYMENT, Action.CHANGE): Permission.DEPLOY,
    (Resource.POLICY, Action.CHANGE): Permission.MANAGE,
    (Resource.GRANT, Action.CHANGE): Permission.MANAGE,
    (Resource.GRANT, Action.READ): Role.ADMIN,
    (Resource.PRINCIPAL, Action.READ): Role.ADMIN,
    (Resource.PRINCIPAL, Action.CREATE): Role.ADMIN,
    (Resource.TOKEN, Action.READ): Role.ADMIN,
    (Resource.TOKEN, Action.CREATE): Role.ADMIN,
    (Resource.TOKEN, Action.REVOKE): Role.ADMIN,
    (Resource.AUDIT, Action.READ): Role.MAINTAINER,
    (Resource.AUDIT, Action.VERIFY): Role.VIEWER,
}
"""Every check the control plane and the endpoints make. A token's holder may always read and
revoke its own tokens (``Access`` handles that before consulting the table)."""

ROLE_RANK = {role: rank for rank, role in enumerate(Role)}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.DATA_SCIENTIST: frozenset({Permission.READ, Permission.PROPOSE}),
    Role.MAINTAINER: frozenset({Permission.READ, Permission.PROPOSE, Permission.APPROVE,
                                Permission.DEPLOY, Permission.INVOKE}),
    Role.ADMIN: frozenset(Permission),
}
"""What each role holds on every model, before per-model grants."""


def parse_role(value: str) -> Role:
    """The role named ``value`` (``InvalidInput`` otherwise)."""
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}; one of {', '.join(Role)}",
                           field="role") from None


def parse_permission(value: str) -> Permission:
    """The permission named ``value`` (``InvalidInput`` otherwise)."""
    try:
        return Permission(value)
    except ValueError:
        raise InvalidInput(f"unknown permission {value!r}; one of {', '.join(Permission)}",
                           field="permission") from None


def effective_permissions(role: str, granted: Collection[str]) -> frozenset[Permission]:
    """What a principal with ``role`` and per-model ``granted`` permissions holds."""
    return ROLE_PERMISSIONS[Role(role)] | {Permission(p) for p in granted}


def is_allowed(resource: Resource, action: Action, role: str,
               granted: Collection[str] = ()) -> bool:
    """Whether ``role`` (plus ``granted`` on the model concerned) may do it; pure."""
    required = RULES[(resource, action)]
    if isinstance(required, Role):
        return ROLE_RANK[Role(role)] >= ROLE_RANK[required]
    return required in effective_permissions(role, granted)


def require(resource: Resource, action: Action, role: str, granted: Collection[str] = (),
            *, who: str = "caller") -> None:
    """``PermissionDenied`` unless :func:`is_allowed`."""
    if not is_allowed(resource, action, role, granted):
        raise PermissionDenied(
            f"{who} may not {action} {resource} (needs {RULES[(resource, action)]})")
