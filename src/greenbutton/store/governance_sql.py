"""``SqlGovernanceStore``: identities, grants, policies, requests and audit in SQL.

Every write takes the audit events that describe it and appends them in the same
transaction, so the audit log never misses a committed change nor records a rolled-back one.
Writes are serialised (SQLite: the write lock from the transaction's start; PostgreSQL: an
advisory lock around the append), so concurrent callers never clash on the chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, delete, func, insert, select, update

from ..errors import NotFound, StaleState
from .audit_seal import AuditSeal
from .audit_sql import AuditedWriter, read_entries, tail_seq
from .engine import create_store_engine, translate_errors
from .governance_records import (
    GATING,
    OPEN,
    AuditEntry,
    AuditEvent,
    GateOutcome,
    Grant,
    Principal,
    RequestRecord,
    TokenInfo,
)
from .governance_schema import (
    gate_results,
    grants,
    model_policies,
    principals,
    tokens,
    transition_requests,
)
from .migrate import upgrade_engine
from .schema import MAX_ID, model_key

Events = Sequence[AuditEvent]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def open_governance_store(uri: str, *, migrate: bool = True, seal: AuditSeal | None = None,
                          clock: Callable[[], datetime] = _utcnow) -> SqlGovernanceStore:
    """A governance store on its own engine; ``migrate=False`` for processes that must not
    race the control plane's migration (e.g. ``audit verify`` reading the store)."""
    engine = create_store_engine("sqlite://" if uri.startswith("memory:") else uri)
    if migrate:
        try:
            upgrade_engine(engine)
        except BaseException:
            engine.dispose()
            raise
    return SqlGovernanceStore(engine, seal=seal, clock=clock)


class SqlGovernanceStore:
    """Governance records on a migrated engine (``SqlStore.governance_store()`` shares the
    lifecycle's, so a transition and its audit entry commit together).

    Usage::

        store = open_governance_store("sqlite:///.greenbutton/greenbutton.db")
        store.principal_for_secret(hash_of(token))
    """

    def __init__(self, engine: Engine, *, seal: AuditSeal | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._engine = engine
        self._audited = AuditedWriter(engine, seal)
        self.seal = seal
        self.clock = clock

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    # --- principals and tokens ---------------------------------------------------------

    def create_principal(self, name: str, kind: str, role: str, *, by: str,
                         events: Events) -> Principal:
        """A new user or service account; ``StaleState`` when the name is taken."""
        at = self.clock()
        values = {"name_key": model_key(name), "name": name, "kind": kind, "role": role,
                  "created_at": at, "created_by": by}
        self._write(insert(principals).values(values), events, at,
                    conflict=f"principal {name!r} already exists")
        return Principal(name, kind, role, at, by)

    def count_principals(self) -> int:
        """How many principals exist (zero on a fresh platform)."""
        return int(self._one(select(func.count()).select_from(principals)) or 0)

    def get_principal(self, name: str) -> Principal | None:
        """The principal called ``name``, if any."""
        with translate_errors(), self._engine.connect() as connection:
            row = connection.execute(
                select(principals).where(principals.c.name_key == model_key(name))).first()
        return None if row is None else _principal(row)

    def list_principals(self) -> list[Principal]:
        """Every principal, by name."""
        return [_principal(r) for r in self._rows(select(principals).order_by(principals.c.name))]

    def add_token(self, principal: str, token_id: str, secret_hash: str, label: str,
                  expires_at: datetime | None, *, events: Events) -> TokenInfo:
        """Record a token by the hash of its secret (the secret itself is never stored)."""
        at = self.clock()
        values = {"token_id": token_id, "secret_hash": secret_hash, "label": label,
                  "principal_key": model_key(principal), "principal": principal,
                  "created_at": at, "expires_at": expires_at, "revoked_at": None}
        self._write(insert(tokens).values(values), events, at, conflict="token id clash")
        return TokenInfo(token_id, principal, label, at, expires_at, None)

    def revoke_token(self, token_id: str, *, events: Events) -> None:
        """Revoke a token now; ``NotFound`` when no live token has that id."""
        at = self.clock()
        statement = update(tokens).where(tokens.c.token_id == token_id,
                                         tokens.c.revoked_at.is_(None)).values(revoked_at=at)
        if self._write(statement, events, at) != 1:
            raise NotFound(f"no live token {token_id!r}", field="token_id")

    def list_tokens(self, principal: str | None = None) -> list[TokenInfo]:
        """Tokens (public facts only), optionally of one principal, oldest first."""
        query = select(tokens).order_by(tokens.c.created_at, tokens.c.token_id)
        if principal is not None:
            query = query.where(tokens.c.principal_key == model_key(principal))
        return [_token(r) for r in self._rows(query)]

    def principal_for_secret(self, secret_hash: str) -> tuple[Principal, str] | None:
        """The principal and token id of a live (unrevoked, unexpired) token, else ``None``."""
        now = self.clock()
        query = (select(principals, tokens.c.token_id, tokens.c.expires_at)
                 .join(tokens, tokens.c.principal_key == principals.c.name_key)
                 .where(tokens.c.secret_hash == secret_hash, tokens.c.revoked_at.is_(None)))
        rows = self._rows(query)
        if not rows or (rows[0].expires_at is not None and rows[0].expires_at <= now):
            return None
        return _principal(rows[0]), rows[0].token_id

    # --- grants and policies -----------------------------------------------------------

    def grant(self, principal: str, model: str, permission: str, *, by: str,
              events: Events) -> None:
        """Give ``principal`` ``permission`` on ``model`` (idempotent)."""
        if permission in self.permissions_on(principal, model):
            return
        at = self.clock()
        values = {"principal_key": model_key(principal), "model_key": model_key(model),
                  "permission": permission, "principal": principal, "model": model,
                  "granted_at": at, "granted_by": by}
        self._write(insert(grants).values(values), events, at, conflict="granted concurrently")

    def revoke_grant(self, principal: str, model: str, permission: str, *,
                     events: Events) -> bool:
        """Take a permission back; ``False`` when it was not held."""
        statement = delete(grants).where(
            grants.c.principal_key == model_key(principal),
            grants.c.model_key == model_key(model), grants.c.permission == permission)
        return self._write(statement, events, self.clock()) == 1

    def permissions_on(self, principal: str, model: str) -> set[str]:
        """Permissions granted to ``principal`` on ``model`` (roles not included)."""
        query = select(grants.c.permission).where(
            grants.c.principal_key == model_key(principal), grants.c.model_key == model_key(model))
        return {r.permission for r in self._rows(query)}

    def list_grants(self, principal: str | None = None) -> list[Grant]:
        """Grants, optionally of one principal, by (model, principal, permission)."""
        query = select(grants).order_by(grants.c.model, grants.c.principal, grants.c.permission)
        if principal is not None:
            query = query.where(grants.c.principal_key == model_key(principal))
        return [Grant(r.principal, r.model, r.permission, r.granted_at, r.granted_by)
                for r in self._rows(query)]

    def set_four_eyes(self, model: str, four_eyes: bool, *, by: str, events: Events) -> None:
        """Set a model's four-eyes policy."""
        at = self.clock()
        key = model_key(model)
        with self._audited.transaction("policy changed concurrently") as connection:
            changed = connection.execute(update(model_policies).where(
                model_policies.c.model_key == key).values(
                four_eyes=four_eyes, updated_at=at, updated_by=by)).rowcount
            if changed == 0:
                connection.execute(insert(model_policies).values(
                    model_key=key, model=model, four_eyes=four_eyes, updated_at=at,
                    updated_by=by))
            self._audited.append(connection, events, at)

    def four_eyes(self, model: str) -> bool | None:
        """The model's four-eyes policy; ``None`` when never set (use the default)."""
        value = self._one(select(model_policies.c.four_eyes).where(
            model_policies.c.model_key == model_key(model)))
        return None if value is None else bool(value)

    # --- transition requests and gate results ------------------------------------------

    def create_request(self, model: str, version: int, to_stage: str, status: str,
                       proposer: str, reason: str | None, gates: Sequence[GateOutcome], *,
                       events: Events, kind: str = "transition",
                       payload: dict[str, Any] | None = None,
                       lease_s: float | None = None) -> RequestRecord:
        """Record a proposal and its gate results in one transaction; ``StaleState`` naming
        the open request when the same one is already open. A ``gating`` request (its gates
        still to run) holds a lease of ``lease_s`` (see ``renew_lease``)."""
        at = self.clock()
        try:
            with self._audited.transaction("pending") as connection:
                result = connection.execute(insert(transition_requests).values(
                    model_key=model_key(model), model=model, version=version,
                    to_stage=to_stage, status=status, proposer=proposer, reason=reason,
                    created_at=at, is_override=False, kind=kind,
                    payload=None if payload is None else json.dumps(payload),
                    lease_until=None if lease_s is None else at + timedelta(seconds=lease_s)))
                (request_id,) = result.inserted_primary_key or (None,)
                assert isinstance(request_id, int)
                self._insert_gates(connection, request_id, model, version, gates, at)
                self._audited.append(connection, [_with_request(e, request_id) for e in events], at)
        except StaleState:
            raise self._already_open(model, version, to_stage, kind) from None
        return self.get_request(request_id)

    def finish_gates(self, request_id: int, status: str, gates: Sequence[GateOutcome], *,
                     events: Events) -> RequestRecord:
        """Store a ``gating`` request's gate results and move it to ``status``;
        ``StaleState`` when it is no longer gating (failed as interrupted meanwhile)."""
        at = self.clock()
        request = self.get_request(request_id)
        with self._audited.transaction() as connection:
            moved = connection.execute(update(transition_requests).where(
                transition_requests.c.id == request_id,
                transition_requests.c.status == GATING,
            ).values(status=status, lease_until=None)).rowcount
            if moved == 1:
                self._insert_gates(connection, request_id, request.model, request.version,
                                   gates, at)
                self._audited.append(connection, [_with_request(e, request_id) for e in events], at)
        if moved != 1:
            current = self.get_request(request_id)
            raise StaleState(f"request #{request_id} is {current.status} "
                             f"({current.decision_reason or 'no reason given'})")
        return self.get_request(request_id)

    def renew_lease(self, request_id: int, lease_s: float) -> bool:
        """Extend a ``gating`` request's lease to ``lease_s`` from now; False when it is no
        longer gating."""
        statement = update(transition_requests).where(
            transition_requests.c.id == request_id, transition_requests.c.status == GATING,
        ).values(lease_until=self.clock() + timedelta(seconds=lease_s))
        with translate_errors(), self._engine.begin() as connection:
            return int(connection.execute(statement).rowcount) == 1

    def fail_lapsed(self, reason: str, events_of: Callable[[RequestRecord], Events]
                    ) -> list[RequestRecord]:
        """Fail every ``gating`` request whose lease ran out (whoever ran its gates is
        gone), each with ``events_of(request)`` audited; the ones this call failed."""
        at = self.clock()
        lapsed = self._rows(select(transition_requests.c.id).where(
            transition_requests.c.status == GATING, transition_requests.c.lease_until < at))
        failed = []
        for (request_id,) in lapsed:
            events = [_with_request(e, request_id) for e in events_of(self.get_request(request_id))]
            statement = update(transition_requests).where(
                transition_requests.c.id == request_id, transition_requests.c.status == GATING,
                transition_requests.c.lease_until < at,
            ).values(status="failed", decided_by="greenbutton", decided_at=at,
                     decision_reason=reason, lease_until=None)
            if self._write(statement, events, at):  # another sweeper may have won
                failed.append(self.get_request(request_id))
        return failed

    def _insert_gates(self, connection: Connection, request_id: int, model: str, version: int,
                      gates: Sequence[GateOutcome], at: datetime) -> None:
        for gate in gates:
            connection.execute(insert(gate_results).values(
                request_id=request_id, model_key=model_key(model), model=model,
                version=version, gate=gate.gate, is_passed=gate.is_passed,
                detail=json.dumps(gate.detail), at=at))

    def open_request(self, model: str, version: int, to_stage: str,
                     kind: str = "transition") -> RequestRecord | None:
        """The open (gating or pending) request for this same move, if there is one."""
        rows = self._rows(select(transition_requests).where(
            transition_requests.c.model_key == model_key(model),
            transition_requests.c.version == version, transition_requests.c.to_stage == to_stage,
            transition_requests.c.kind == kind, transition_requests.c.status.in_(OPEN)))
        return self._request(rows[0]) if rows else None

    def _already_open(self, model: str, version: int, to_stage: str, kind: str) -> StaleState:
        found = self.open_request(model, version, to_stage, kind)
        if found is None:  # decided between the two statements: the caller may retry
            return StaleState("the same request was open a moment ago; retry")
        return StaleState(f"request #{found.id} for the same change is already {found.status} "
                          f"(proposed by {found.proposer!r})")

    def get_request(self, request_id: int) -> RequestRecord:
        """One request with its gate results; ``NotFound`` when absent."""
        if not 0 < request_id <= MAX_ID:
            raise NotFound(f"no transition request #{request_id}", field="request_id")
        rows = self._rows(select(transition_requests).where(transition_requests.c.id == request_id))
        if not rows:
            raise NotFound(f"no transition request #{request_id}", field="request_id")
        return self._request(rows[0])

    def list_requests(self, model: str | None = None,
                      status: str | None = None) -> list[RequestRecord]:
        """Requests, newest first, optionally of one model and/or in one status."""
        query = select(transition_requests).order_by(transition_requests.c.id.desc())
        if model is not None:
            query = query.where(transition_requests.c.model_key == model_key(model))
        if status is not None:
            query = query.where(transition_requests.c.status == status)
        return [self._request(r) for r in self._rows(query)]

    def decide_request(self, request_id: int, expected: Sequence[str], status: str, *,
                       by: str, reason: str | None, is_override: bool,
                       events: Events) -> RequestRecord:
        """Move a request from one of ``expected`` to ``status``; exactly one racer wins,
        the others get ``StaleState``."""
        at = self.clock()
        statement = update(transition_requests).where(
            transition_requests.c.id == request_id,
            transition_requests.c.status.in_(list(expected)),
        ).values(status=status, decided_by=by, decided_at=at, decision_reason=reason,
                 is_override=is_override)
        if self._write(statement, events, at) != 1:
            current = self.get_request(request_id)
            by = f" by {current.decided_by!r}" if current.decided_by else ""
            raise StaleState(f"request #{request_id} is already {current.status}{by}")
        return self.get_request(request_id)

    def gate_results(self, model: str, version: int) -> list[GateOutcome]:
        """Every stored gate verdict on a version, oldest first."""
        query = select(gate_results).where(
            gate_results.c.model_key == model_key(model), gate_results.c.version == version
        ).order_by(gate_results.c.id)
        return [_gate(r) for r in self._rows(query)]

    # --- audit -------------------------------------------------------------------------

    def append_audit(self, events: Events) -> None:
        """Append events that describe something not stored here (a token's use, a rollout)."""
        at = self.clock()
        with self._audited.transaction() as connection:
            self._audited.append(connection, events, at)

    def audit_entries(self, *, after_seq: int = 0, limit: int | None = None,
                      actions: Sequence[str] = ()) -> list[AuditEntry]:
        """Audit entries after ``after_seq`` (of ``actions`` only, if given), oldest first."""
        with translate_errors(), self._engine.connect() as connection:
            return read_entries(connection, after_seq=after_seq, limit=limit, actions=actions)

    def audit_tail(self) -> int:
        """The newest audit entry's seq (0 for an empty log)."""
        with translate_errors(), self._engine.connect() as connection:
            return tail_seq(connection)

    # --- plumbing ----------------------------------------------------------------------

    def _write(self, statement: Any, events: Events, at: datetime,
               conflict: str | None = None) -> int:
        with self._audited.transaction(conflict) as connection:
            count = int(connection.execute(statement).rowcount)
            if count:
                self._audited.append(connection, events, at)
        return count

    def _rows(self, query: Any) -> list[Row[Any]]:
        with translate_errors(), self._engine.connect() as connection:
            return list(connection.execute(query).all())

    def _one(self, query: Any) -> Any:
        with translate_errors(), self._engine.connect() as connection:
            return connection.execute(query).scalar_one_or_none()

    def _request(self, row: Row[Any]) -> RequestRecord:
        gates = self._rows(select(gate_results).where(and_(
            gate_results.c.request_id == row.id)).order_by(gate_results.c.id))
        return RequestRecord(
            id=row.id, model=row.model, version=row.version, to_stage=row.to_stage,
            status=row.status, proposer=row.proposer, reason=row.reason,
            created_at=row.created_at, decided_by=row.decided_by, decided_at=row.decided_at,
            decision_reason=row.decision_reason, is_override=bool(row.is_override),
            gates=tuple(_gate(g) for g in gates), kind=row.kind,
            payload=None if row.payload is None else json.loads(row.payload))


def _with_request(event: AuditEvent, request_id: int) -> AuditEvent:
    after = {"request_id": request_id, **(event.after or {})}
    return AuditEvent(event.actor, event.action, event.target, event.before, after)


def _principal(row: Row[Any]) -> Principal:
    return Principal(row.name, row.kind, row.role, row.created_at, row.created_by)


def _token(row: Row[Any]) -> TokenInfo:
    return TokenInfo(row.token_id, row.principal, row.label, row.created_at, row.expires_at,
                     row.revoked_at)


def _gate(row: Row[Any]) -> GateOutcome:
    return GateOutcome(row.gate, bool(row.is_passed), json.loads(row.detail))
