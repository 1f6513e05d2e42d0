"""Governance tables (migrations 0003-0005): principals, tokens, grants, policies, transition
requests, gate results and the hash-chained audit log.

Like the lifecycle tables, rows are keyed by the SHA-256 of free-form names (``*_key``) and
keep the name itself verbatim in a ``Text`` column.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, text

from .schema import UtcDateTime, metadata

principals = Table(
    "principals",
    metadata,
    Column("name_key", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("role", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("principal_key", String(64), nullable=False, index=True),
    Column("principal", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

grants = Table(
    "grants",
    metadata,
    Column("principal_key", String(64), primary_key=True),
    Column("model_key", String(64), primary_key=True),
    Column("permission", String(16), primary_key=True),
    Column("principal", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
    Column("granted_by", Text, nullable=False),
)

model_policies = Table(
    "model_policies",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("model", Text, nullable=False),
    Column("four_eyes", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", Text, nullable=False),
)

OPEN_WHERE = "status IN ('gating', 'pending')"
"""Requests that block the same move: their gates run, or they await a decision."""

transition_requests = Table(
    "transition_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_key", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("to_stage", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("proposer", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_by", Text, nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("is_override", Boolean, nullable=False),
    Column("kind", String(16), nullable=False, server_default="transition"),
    Column("payload", Text, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Index("ix_transition_requests_model_key_status", "model_key", "status"),
    Index("uq_transition_requests_open", "model_key", "version", "to_stage", "kind",
          unique=True, sqlite_where=text(OPEN_WHERE), postgresql_where=text(OPEN_WHERE)),
)
"""``kind``: ``transition`` (a version to a stage) or ``deployment`` (a spec change under
four-eyes, ``payload`` holding it; ``version`` 0). At most one request of each is open
(``gating`` or ``pending``). ``lease_until``: while ``gating``, until when the control plane
running the gates answers for them (it renews the lease; past it, they were interrupted)."""

gate_results = Table(
    "gate_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, nullable=True),
    Column("model_key", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("gate", String(64), nullable=False),
    Column("is_passed", Boolean, nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_gate_results_model_key_version", "model_key", "version"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("before", Text, nullable=False),
    Column("after", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=True),
    Index("ix_audit_log_action_seq", "action", "seq"),
)
"""``at`` is the ISO text that was hashed, so verification never depends on a driver's
datetime round trip."""
