"""greenbutton's own store, opened by URI: ``memory://``, ``sqlite:///…``, ``postgresql://…``.

SQLAlchemy is imported only when a SQL backend is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnsupportedBackend
from .memory import MemoryStore
from .protocol import LifecycleStore, Stage, StageChange, Transition, VersionState

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


def _sql(uri: str) -> LifecycleStore:
    from .sql import SqlStore  # SQLAlchemy imported only when chosen

    return SqlStore(uri)


BUILDERS: dict[str, Callable[[str], LifecycleStore]] = {
    "memory": lambda uri: MemoryStore(),
    "sqlite": _sql,
    "postgresql": _sql,
    "postgresql+psycopg": _sql,
}


def open_store(uri: str) -> LifecycleStore:
    """The lifecycle store for ``uri``, chosen by its scheme."""
    scheme = uri.partition(":")[0]
    if scheme not in BUILDERS:
        raise UnsupportedBackend(scheme, known=sorted(BUILDERS))
    return BUILDERS[scheme](uri)
