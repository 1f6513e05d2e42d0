"""greenbutton's own store, opened by URI: ``sqlite:///…``, ``postgresql://…``, or
``memory://`` (an in-memory SQLite database: the same code, nothing kept).

SQLAlchemy is imported only when the store is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UnsupportedBackend
from .memory import MemoryStore
from .protocol import LifecycleStore, Stage, StageChange, Transition, VersionState

if TYPE_CHECKING:
    from .audit_seal import AuditSeal
    from .sql import SqlStore

__all__ = [
    "BUILDERS",
    "LifecycleStore",
    "MemoryStore",
    "Stage",
    "StageChange",
    "Transition",
    "VersionState",
    "open_store",
]


def _sql(uri: str, seal: AuditSeal | None) -> SqlStore:
    from .sql import SqlStore  # SQLAlchemy imported only when chosen

    return SqlStore(uri, seal=seal)


BUILDERS: dict[str, Callable[[str, AuditSeal | None], SqlStore]] = {
    "memory": _sql,
    "sqlite": _sql,
    "postgresql": _sql,
    "postgresql+psycopg": _sql,
}


def open_store(uri: str, *, seal: AuditSeal | None = None) -> SqlStore:
    """greenbutton's store for ``uri``, chosen by its scheme; audit entries are sealed with
    ``seal`` (the control plane's key) when given."""
    scheme = uri.partition(":")[0]
    if scheme not in BUILDERS:
        raise UnsupportedBackend(scheme, known=sorted(BUILDERS))
    return BUILDERS[scheme](uri, seal)
