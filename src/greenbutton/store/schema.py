"""The store's tables as SQLAlchemy Core metadata (the migrations create them; this reads them).

Rows are keyed by ``model_key``, the SHA-256 of the model name, rather than by the name
itself: names are stored verbatim at any length, and PostgreSQL cannot index a text value
above about 2.7 kB.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


MAX_ID = 2**31 - 1
"""The largest id or version number an ``Integer`` column holds on every backend (PostgreSQL's
is 32-bit): a larger one names nothing, and is looked up as nothing."""


def model_key(model: str) -> str:
    """The fixed-length key of a model name (hex SHA-256 of its UTF-8 bytes)."""
    return hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()


metadata = MetaData()

version_stages = Table(
    "version_stages",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("model", Text, nullable=False),
    Column("stage", String(16), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", Text, nullable=False),
    Index(
        "uq_version_stages_exclusive_stage",
        "model_key",
        "stage",
        unique=True,
        sqlite_where=text("stage IN ('Production', 'Staging')"),
        postgresql_where=text("stage IN ('Production', 'Staging')"),
    ),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_key", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_stage", String(16), nullable=False),
    Column("to_stage", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_transitions_model_key_version", "model_key", "version"),
)
