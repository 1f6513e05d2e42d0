"""Payload rows as greenbutton wrote them before batches: one ``gb_predictions`` row each.

Stores written then are still read, exported and pruned; these helpers write such rows the
way that version did (SQLAlchemy's insert, the store's JSON encoder, names inline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from greenbutton.monitoring.payload_schema import VERSION_TABLE, payload_requests, predictions
from greenbutton.monitoring.payload_store import PayloadStore


def write_rows_before_batches(store: PayloadStore, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the ``gb_predictions`` columns) one row each, in a store
    that, like those of that version, has no alembic version table: the next open adopts it."""
    with store.engine.begin() as connection:
        connection.execute(insert(predictions), [dict(row) for row in rows])
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {VERSION_TABLE}")


def write_each(store: PayloadStore, rows: Sequence[dict[str, Any]], per_batch: int = 1) -> None:
    """Log ``rows`` in batches of ``per_batch`` (as a log flushing that often would)."""
    for start in range(0, len(rows), per_batch):
        store.write_predictions(rows[start:start + per_batch])


def logged_ids(store: PayloadStore) -> list[str]:
    """The request ids of every logged request, rows before batches first, in log order."""
    with store.engine.connect() as connection:
        before = connection.execute(select(predictions.c.request_id)
                                    .order_by(predictions.c.id)).scalars().all()
        batched = connection.execute(select(payload_requests.c.request_id)
                                     .order_by(payload_requests.c.batch_id,
                                               payload_requests.c.position)).scalars().all()
    return [*before, *batched]
