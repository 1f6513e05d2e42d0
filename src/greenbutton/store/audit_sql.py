"""Appending to and reading the hash-chained audit log inside a caller's transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine, func, insert, select, text

from .audit_seal import AuditSeal
from .engine import translate_errors, writer
from .governance_records import GENESIS_HASH, AuditEntry, AuditEvent, canonical_json, entry_hash
from .governance_schema import audit_log

# any constant: PostgreSQL serialises appenders on it until their transaction ends
_PG_AUDIT_LOCK = 0x6762_6175
_HEADS = "greenbutton_audit_heads"


class AuditedWriter:
    """Write transactions whose changes and audit entries commit together; the head they
    reached is anchored (``AuditSeal.anchor``) once they have.

    Usage::

        with audited.transaction(conflict="raced") as connection:
            connection.execute(...)
            audited.append(connection, [AuditEvent(...)], at)
    """

    def __init__(self, engine: Engine, seal: AuditSeal | None) -> None:
        self._writer = writer(engine)
        self.seal = seal

    @contextlib.contextmanager
    def transaction(self, conflict: str | None = None) -> Iterator[Connection]:
        """A write transaction (``StaleState`` with ``conflict`` on an integrity error)."""
        heads: list[tuple[int, str]] = []
        with translate_errors(conflict=conflict), self._writer.begin() as connection:
            connection.info[_HEADS] = heads
            try:
                yield connection
            finally:
                connection.info.pop(_HEADS, None)
        if heads and self.seal is not None:
            self.seal.anchor(*heads[-1])

    def append(self, connection: Connection, events: Sequence[AuditEvent],
               at: datetime) -> None:
        """Chain ``events`` in this transaction."""
        head = append_events(connection, events, at, self.seal)
        if head is not None:
            connection.info[_HEADS].append(head)


def append_events(connection: Connection, events: Sequence[AuditEvent], at: datetime,
                  seal: AuditSeal | None) -> tuple[int, str] | None:
    """Chain ``events`` after the last entry, in the caller's transaction (a writer's, which
    on SQLite holds the write lock from its start; PostgreSQL takes an advisory lock).
    Returns the new head ``(seq, hash)`` to anchor once the transaction commits."""
    if not events:
        return None
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
            before=before, after=after, prev_hash=prev_hash, hash=digest,
            mac=None if seal is None else seal.mac(digest)))
        prev_hash = digest
    return seq, prev_hash


def read_entries(connection: Connection, *, after_seq: int = 0, limit: int | None = None,
                 actions: Sequence[str] = ()) -> list[AuditEntry]:
    """Entries with ``seq > after_seq`` (of ``actions`` only, if given), oldest first."""
    query = select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
    if actions:
        query = query.where(audit_log.c.action.in_(list(actions)))
    if limit is not None:
        query = query.limit(limit)
    return [
        AuditEntry(seq=r.seq, at=r.at, actor=r.actor, action=r.action, target=r.target,
                   before=r.before, after=r.after, prev_hash=r.prev_hash, hash=r.hash,
                   mac=r.mac)
        for r in connection.execute(query)
    ]


def tail_seq(connection: Connection) -> int:
    """The newest entry's seq (0 for an empty log)."""
    return int(connection.execute(select(func.max(audit_log.c.seq))).scalar_one_or_none() or 0)
