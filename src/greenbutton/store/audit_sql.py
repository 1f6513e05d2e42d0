"""Appending to and reading the hash-chained audit log inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select, text

from .governance_records import GENESIS_HASH, AuditEntry, AuditEvent, canonical_json, entry_hash
from .governance_schema import audit_log

# any constant: PostgreSQL serialises appenders on it until their transaction ends
_PG_AUDIT_LOCK = 0x6762_6175


def append_events(connection: Connection, events: Sequence[AuditEvent], at: datetime) -> None:
    """Chain ``events`` after the last entry, in the caller's transaction.

    Call after the transaction's own writes: on SQLite the first write takes the database
    lock, so the tail read here cannot be stale; PostgreSQL takes an advisory lock.
    """
    if not events:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_AUDIT_LOCK})
    tail = connection.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (0, GENESIS_HASH) if tail is None else (tail.seq, tail.hash)
    stamp = at.isoformat()
    for event in events:
        seq += 1
        before, after = canonical_json(event.before), canonical_json(event.after)
        digest = entry_hash(prev_hash, seq, stamp, event.actor, event.action, event.target,
                            before, after)
        connection.execute(insert(audit_log).values(
            seq=seq, at=stamp, actor=event.actor, action=event.action, target=event.target,
            before=before, after=after, prev_hash=prev_hash, hash=digest))
        prev_hash = digest


def read_entries(connection: Connection, *, after_seq: int = 0,
                 limit: int | None = None) -> list[AuditEntry]:
    """Entries with ``seq > after_seq``, oldest first."""
    query = select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [
        AuditEntry(seq=r.seq, at=r.at, actor=r.actor, action=r.action, target=r.target,
                   before=r.before, after=r.after, prev_hash=r.prev_hash, hash=r.hash)
        for r in connection.execute(query)
    ]
