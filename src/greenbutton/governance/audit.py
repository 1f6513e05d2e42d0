"""The audit log's reader side: verify the hash chain, the seal and the anchors, and name the
first broken entry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..store.audit_seal import Anchor, AuditSeal
from ..store.governance_records import GENESIS_HASH, AuditEntry
from ..store.governance_sql import SqlGovernanceStore

_PAGE = 1000


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`: ``broken_seq`` is ``None`` when the log is intact."""

    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    is_sealed: bool = False
    """Entries were checked against the audit key (not only the SHA-256 chain)."""
    anchors: tuple[str, ...] = ()
    """Where the anchors that were checked came from."""

    @property
    def is_intact(self) -> bool:
        """True when every entry hashes to what is stored, links to its predecessor, carries
        a valid mac where one is due, and the log reaches every anchor."""
        return self.broken_seq is None


@dataclass
class ChainCursor:
    """Walks the log forward, entry by entry, from where it stopped; the first problem found
    stops it (``problem``, ``broken_seq``)."""

    seal: AuditSeal | None = None
    seq: int = 0
    head: str = GENESIS_HASH
    problem: str | None = None
    broken_seq: int | None = None
    hashes: dict[int, str] = field(default_factory=dict)
    """Hashes of the entries asked for in ``watch`` (anchored seqs), once passed."""
    watch: frozenset[int] = frozenset()

    def advance(self, entries: Iterable[AuditEntry]) -> int:
        """Check ``entries`` (the ones right after the last checked); returns how many passed."""
        passed = 0
        for entry in entries:
            if self.problem is not None:
                break
            problem = self._problem_with(entry)
            if problem is not None:
                self.problem, self.broken_seq = problem, self.seq + 1
                break
            self.seq, self.head = entry.seq, entry.hash
            if entry.seq in self.watch:
                self.hashes[entry.seq] = entry.hash
            passed += 1
        return passed

    def _problem_with(self, entry: AuditEntry) -> str | None:
        if entry.seq != self.seq + 1:
            return f"expected entry {self.seq + 1}, found {entry.seq} (entry missing?)"
        if entry.prev_hash != self.head:
            return "does not link to the previous entry's hash"
        if entry.computed_hash() != entry.hash:
            return "content does not match its hash (altered)"
        if self.seal is not None and entry.seq >= self.seal.sealed_from \
                and not self.seal.is_authentic(entry.hash, entry.mac):
            return "not sealed by the audit key (altered, or written without the key)"
        return None


def verify_entries(entries: list[AuditEntry], *, prev_hash: str = GENESIS_HASH,
                   expected_seq: int = 1) -> ChainReport:
    """Check consecutive entries (SHA-256 chain only); the first broken one is named."""
    cursor = ChainCursor(seq=expected_seq - 1, head=prev_hash)
    checked = cursor.advance(entries)
    return ChainReport(checked, cursor.broken_seq, cursor.problem)


def verify_chain(store: SqlGovernanceStore, *, seal: AuditSeal | None = None,
                 anchors: Sequence[Anchor] = ()) -> ChainReport:
    """Walk the whole log page by page: chain, seal (with ``seal``) and ``anchors`` (the log
    must reach each anchored entry, unchanged). Reports the first problem."""
    cursor = ChainCursor(seal=seal, watch=frozenset(a.seq for a in anchors))
    checked = 0
    while cursor.problem is None:
        page = store.audit_entries(after_seq=cursor.seq, limit=_PAGE)
        if not page:
            break
        checked += cursor.advance(page)
    where = tuple(a.where for a in anchors)
    if cursor.problem is not None:
        return ChainReport(checked, cursor.broken_seq, cursor.problem, seal is not None, where)
    for anchor in sorted(anchors, key=lambda a: a.seq):
        found = cursor.hashes.get(anchor.seq)
        if found is None:
            return ChainReport(checked, cursor.seq + 1, f"the log ends at entry {cursor.seq} "
                               f"but reached entry {anchor.seq} ({anchor.where}): truncated",
                               seal is not None, where)
        if found != anchor.hash:
            return ChainReport(checked, anchor.seq, f"differs from its anchor ({anchor.where}): "
                               "rewritten", seal is not None, where)
    return ChainReport(checked, is_sealed=seal is not None, anchors=where)
