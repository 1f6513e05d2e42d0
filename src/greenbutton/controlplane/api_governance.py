"""Control-plane API of governance: requests and approvals, gates, principals, tokens,
grants, policies and the audit log. Thin: parse, call ``Access``/``Approvals``, render."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..dataplane.encoding import Body, read_json_body
from ..dataplane.responses import json_response
from ..errors import InvalidInput
from ..governance.access import Access, Caller
from ..governance.approvals import Approvals, Outcome
from ..governance.audit import verify_chain
from ..governance.permissions import Action, Permission, Resource, Role
from ..registry import Stage
from ..store.audit_seal import Anchor
from ..store.governance_records import STATUSES
from ..store.schema import MAX_ID
from .auth import authenticate, authorize, readable
from .context import of, off_loop
from .openapi import Query, documented

MAX_BODY_BYTES = 64 * 1024
MAX_AUDIT_PAGE = 10_000
API = "/api/v1"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProposeBody(_Body):
    stage: Stage
    reason: str | None = Field(default=None, max_length=4000)


class DecisionBody(_Body):
    reason: str | None = Field(default=None, max_length=4000)


class PrincipalBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    kind: Literal["user", "service"] = "user"


class TokenBody(_Body):
    principal: str = Field(min_length=1, max_length=200)
    label: str = Field(default="", max_length=200)


class GrantBody(_Body):
    principal: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=10_000)
    permission: Permission


class PolicyBody(_Body):
    four_eyes: bool


def routes() -> list[Route]:
    """Every governance route, in one place."""
    return [
        Route(f"{API}/whoami", whoami, methods=["GET"]),
        Route(f"{API}/models/{{name}}/versions/{{ref}}/requests", propose, methods=["POST"]),
        Route(f"{API}/models/{{name}}/versions/{{ref}}/gates", gates, methods=["GET"]),
        Route(f"{API}/models/{{name}}/policy", set_policy, methods=["PUT"]),
        Route(f"{API}/requests", list_requests, methods=["GET"]),
        Route(f"{API}/requests/{{id:int}}", get_request, methods=["GET"]),
        Route(f"{API}/requests/{{id:int}}/{{decision}}", decide, methods=["POST"]),
        Route(f"{API}/principals", list_principals, methods=["GET"]),
        Route(f"{API}/principals", create_principal, methods=["POST"]),
        Route(f"{API}/tokens", list_tokens, methods=["GET"]),
        Route(f"{API}/tokens", create_token, methods=["POST"]),
        Route(f"{API}/tokens/{{token_id}}/revoke", revoke_token, methods=["POST"]),
        Route(f"{API}/grants", list_grants, methods=["GET"]),
        Route(f"{API}/grants", add_grant, methods=["POST"]),
        Route(f"{API}/grants/revoke", remove_grant, methods=["POST"]),
        Route(f"{API}/audit", audit_log, methods=["GET"]),
        Route(f"{API}/audit/verify", audit_verify, methods=["GET"]),
    ]


def plain(record: Any) -> Any:
    """A dataclass record as JSON-able data."""
    return dataclasses.asdict(record)


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """A promotion's result: the request (if any) and the lifecycle moves."""
    request = None if outcome.request is None else plain(outcome.request)
    return {"request": request, "transitions": [plain(t) for t in outcome.transitions]}


async def _parse(request: Request, model: type[Body]) -> Body:
    return await read_json_body(request, model, MAX_BODY_BYTES)


async def _caller(request: Request) -> tuple[Caller, Access, Approvals]:
    caller = await authenticate(request)
    plane = of(request)
    return caller, plane.access, plane.approvals


async def whoami(request: Request) -> Response:
    """The caller's name and role."""
    caller, _, _ = await _caller(request)
    return json_response({"name": caller.name, "role": caller.role, "token_id": caller.token_id})


@documented(body=ProposeBody, ok=(201,))
async def propose(request: Request) -> Response:
    """Propose a version for Staging/Production; gates run before this answers."""
    caller, _, approvals = await _caller(request)
    body = await _parse(request, ProposeBody)
    name = request.path_params["name"]
    await authorize(request, Resource.REQUEST, Action.PROPOSE, model=name)
    version = await off_loop(of(request).registry.resolve, name, request.path_params["ref"])
    record = await off_loop(approvals.propose, caller, name, version, body.stage, body.reason)
    return json_response({"request": plain(record)}, 201)


async def promote(request: Request, caller: Caller, name: str, version: int, stage: Stage,
                  reason: str | None) -> Response:
    """``POST …/transitions`` with governance: the green button, 201 when applied, 202 when
    the request awaits another approver."""
    plane = of(request)
    outcome = await off_loop(plane.approvals.promote, caller, name, version, stage, reason)
    if outcome.transitions:
        plane.controller.trigger()
    return json_response(outcome_json(outcome), 201 if outcome.transitions else 202)


@documented(body=DecisionBody)
async def decide(request: Request) -> Response:
    """``approve``, ``reject`` or ``override`` a request."""
    caller, _, approvals = await _caller(request)
    body = await _parse(request, DecisionBody)
    request_id, decision = request.path_params["id"], request.path_params["decision"]
    if decision == "reject":
        record = await off_loop(approvals.reject, caller, request_id, body.reason)
        return json_response({"request": plain(record), "transitions": []})
    actions = {"approve": approvals.approve, "override": approvals.override}
    if decision not in actions:
        raise InvalidInput("decision must be approve, reject or override", field="decision")
    outcome = await off_loop(actions[decision], caller, request_id, body.reason)
    of(request).controller.trigger()
    return json_response(outcome_json(outcome))


@documented(query=(Query("model", {"type": "string"}),
                   Query("status", {"type": "string", "enum": list(STATUSES)})))
async def list_requests(request: Request) -> Response:
    """Requests the caller may read, newest first (``?model=``, ``?status=``)."""
    _, access, _ = await _caller(request)
    found = await off_loop(access.store.list_requests, request.query_params.get("model"),
                        request.query_params.get("status"))
    allowed = await readable(request, sorted({r.model for r in found}))
    return json_response({"requests": [plain(r) for r in found if r.model in allowed]})


async def get_request(request: Request) -> Response:
    """One request with its gate results."""
    _, access, _ = await _caller(request)
    record = await off_loop(access.store.get_request, request.path_params["id"])
    await authorize(request, Resource.REQUEST, Action.READ, model=record.model)
    return json_response(plain(record))


async def gates(request: Request) -> Response:
    """Every gate result stored for a version."""
    _, access, _ = await _caller(request)
    name = request.path_params["name"]
    await authorize(request, Resource.MODEL, Action.READ, model=name)
    version = await off_loop(of(request).registry.resolve, name, request.path_params["ref"])
    found = await off_loop(access.store.gate_results, name, version)
    return json_response({"gates": [plain(g) for g in found]})


@documented(body=PolicyBody)
async def set_policy(request: Request) -> Response:
    """Turn four-eyes approval on or off for a model (needs ``manage``)."""
    caller, _, approvals = await _caller(request)
    body = await _parse(request, PolicyBody)
    await off_loop(approvals.set_four_eyes, caller, request.path_params["name"], body.four_eyes)
    return json_response({"four_eyes": body.four_eyes})


async def list_principals(request: Request) -> Response:
    """Every user and service account (admin)."""
    caller, access, _ = await _caller(request)
    return json_response({"principals": [plain(p) for p in
                                         await off_loop(access.list_principals, caller)]})


@documented(body=PrincipalBody, ok=(201,))
async def create_principal(request: Request) -> Response:
    """Create a user or service account (admin)."""
    caller, access, _ = await _caller(request)
    body = await _parse(request, PrincipalBody)
    created = await off_loop(access.create_principal, caller, body.name, body.role, body.kind)
    return json_response(plain(created), 201)


@documented(query=(Query("principal", {"type": "string"}),))
async def list_tokens(request: Request) -> Response:
    """Tokens' public facts: ``?principal=`` (default: the caller's own)."""
    caller, access, _ = await _caller(request)
    principal = request.query_params.get("principal", caller.name)
    found = await off_loop(access.list_tokens, caller, principal)
    return json_response({"tokens": [plain(t) for t in found]})


@documented(body=TokenBody, ok=(201,))
async def create_token(request: Request) -> Response:
    """Issue a token; its secret is in this response only."""
    caller, access, _ = await _caller(request)
    body = await _parse(request, TokenBody)
    issued = await off_loop(access.issue_token, caller, body.principal, body.label)
    return json_response({**plain(issued.info), "token": issued.secret}, 201)


async def revoke_token(request: Request) -> Response:
    """Revoke a token (its owner or an admin)."""
    caller, access, _ = await _caller(request)
    await off_loop(access.revoke_token, caller, request.path_params["token_id"])
    return json_response({"revoked": request.path_params["token_id"]})


@documented(query=(Query("principal", {"type": "string"}),))
async def list_grants(request: Request) -> Response:
    """Per-model grants: ``?principal=`` (default: the caller's own)."""
    caller, access, _ = await _caller(request)
    principal = request.query_params.get("principal", caller.name)
    found = await off_loop(access.list_grants, caller, principal)
    return json_response({"grants": [plain(g) for g in found]})


@documented(body=GrantBody, ok=(201,))
async def add_grant(request: Request) -> Response:
    """Grant a permission on a model (needs ``manage`` on it)."""
    return await _change_grant(request, is_granted=True)


@documented(body=GrantBody)
async def remove_grant(request: Request) -> Response:
    """Take a permission back (needs ``manage`` on the model)."""
    return await _change_grant(request, is_granted=False)


async def _change_grant(request: Request, *, is_granted: bool) -> Response:
    caller, access, _ = await _caller(request)
    body = await _parse(request, GrantBody)
    await off_loop(access.change_grant, caller, body.principal, body.model, body.permission,
                is_granted=is_granted)
    return json_response({"grant": body.model_dump(), "is_granted": is_granted},
                         201 if is_granted else 200)


@documented(query=(Query("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
                   Query("limit", {"type": "integer", "minimum": 1,
                                   "maximum": MAX_AUDIT_PAGE})))
async def audit_log(request: Request) -> Response:
    """Audit entries after ``?after=`` (default 0), at most ``?limit=`` (default 1000)."""
    _, access, _ = await _caller(request)
    await authorize(request, Resource.AUDIT, Action.READ)
    after = _bounded_int(request, "after", 0, 0, MAX_ID)
    limit = _bounded_int(request, "limit", 1000, 1, MAX_AUDIT_PAGE)
    entries = await off_loop(access.store.audit_entries, after_seq=after, limit=limit)
    return json_response({"entries": [plain(e) for e in entries]})


def _bounded_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in ``low..high`` (422 naming it otherwise)."""
    text = request.query_params.get(name, str(default))
    if not text.strip().isdecimal() or not low <= int(text) <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}", field=name)
    return int(text)


@documented(query=(Query("head", {"type": "array", "items": {"type": "string"}},
                         "SEQ:HASH the log must still reach"),))
async def audit_verify(request: Request) -> Response:
    """Check the whole log: chain, seal, the anchored head and every ``?head=SEQ:HASH``;
    names the first broken entry."""
    _, access, _ = await _caller(request)
    await authorize(request, Resource.AUDIT, Action.VERIFY)
    seal = access.store.seal
    anchors = [Anchor.parse(h, "?head") for h in request.query_params.getlist("head")]
    anchors += seal.anchors() if seal is not None else []
    report = await off_loop(verify_chain, access.store, seal=seal, anchors=anchors)
    return json_response({**plain(report), "is_intact": report.is_intact})
