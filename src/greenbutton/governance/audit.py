"""The audit log's reader side: verify the hash chain and name the first broken entry."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.governance_records import GENESIS_HASH, AuditEntry
from ..store.governance_sql import SqlGovernanceStore

_PAGE = 1000


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`: ``broken_seq`` is ``None`` when the chain is intact."""

    checked: int
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def is_intact(self) -> bool:
        """True when every entry hashes to what is stored and links to its predecessor."""
        return self.broken_seq is None


def verify_entries(entries: list[AuditEntry], *, prev_hash: str = GENESIS_HASH,
                   expected_seq: int = 1) -> ChainReport:
    """Check consecutive entries; the first whose content, link or number is wrong is named."""
    for checked, entry in enumerate(entries):
        problem = None
        if entry.seq != expected_seq:
            problem = f"expected entry {expected_seq}, found {entry.seq} (entry missing?)"
        elif entry.prev_hash != prev_hash:
            problem = "does not link to the previous entry's hash"
        elif entry.computed_hash() != entry.hash:
            problem = "content does not match its hash (altered)"
        if problem is not None:
            return ChainReport(checked, expected_seq, problem)
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    return ChainReport(len(entries))


def verify_chain(store: SqlGovernanceStore) -> ChainReport:
    """Walk the whole log page by page and report the first broken entry, if any."""
    prev_hash, seq, checked = GENESIS_HASH, 0, 0
    while True:
        page = store.audit_entries(after_seq=seq, limit=_PAGE)
        if not page:
            return ChainReport(checked)
        report = verify_entries(page, prev_hash=prev_hash, expected_seq=seq + 1)
        if not report.is_intact:
            return ChainReport(checked + report.checked, report.broken_seq, report.problem)
        checked += len(page)
        prev_hash, seq = page[-1].hash, page[-1].seq
