"""Records of greenbutton's governance tables, and the audit chain's hashing rule.

The hash of audit entry *n* covers its own fields and the hash of entry *n-1*, in canonical
JSON (sorted keys, no spaces, UTF-8), so changing any byte of any stored entry breaks the
chain at that entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GATING = "gating"
STATUSES = (GATING, "pending", "blocked", "approved", "rejected", "failed")
"""What a transition request can be (see ``governance/approvals.py``)."""
OPEN = (GATING, "pending")
"""Statuses that block another request for the same move."""
GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first audit entry."""


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value`` that is hashed (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, target: str,
               before: str, after: str) -> str:
    """SHA-256 of one audit entry's stored fields, chained to the previous entry's hash."""
    body = {"prev_hash": prev_hash, "seq": seq, "at": at, "actor": actor, "action": action,
            "target": target, "before": before, "after": after}
    return hashlib.sha256(canonical_json(body).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is given a place in the chain."""

    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class AuditEntry:
    """One stored audit entry, as read back (``before``/``after`` as stored JSON text)."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str
    prev_hash: str
    hash: str
    mac: str | None = None
    """HMAC of ``hash`` with the audit key (``None``: written without the key)."""

    def computed_hash(self) -> str:
        """What ``hash`` must be for this entry's stored fields."""
        return entry_hash(self.prev_hash, self.seq, self.at, self.actor, self.action,
                          self.target, self.before, self.after)


@dataclass(frozen=True)
class Principal:
    """A user or a service account."""

    name: str
    kind: str
    role: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class TokenInfo:
    """A token's public facts (never its secret)."""

    token_id: str
    principal: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Grant:
    """A per-model permission held by a principal."""

    principal: str
    model: str
    permission: str
    granted_at: datetime
    granted_by: str


@dataclass(frozen=True)
class GateOutcome:
    """One gate's verdict on one model version."""

    gate: str
    is_passed: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """A transition request and its decision."""

    id: int
    model: str
    version: int
    to_stage: str
    status: str
    proposer: str
    reason: str | None
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    is_override: bool
    gates: tuple[GateOutcome, ...] = ()
    kind: str = "transition"
    """``transition`` (``version`` to ``to_stage``) or ``deployment`` (a spec change)."""
    payload: dict[str, Any] | None = None
    """A deployment request's change: ``{"name", "spec", "expected_revision"}``."""
