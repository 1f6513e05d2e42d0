"""Retention of the payload log: deleting old requests and feedback in short chunks.

Used through :meth:`.payload_store.PayloadStore.prune` and ``prune_feedback`` (the periodic
path is :mod:`.retention`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Table, delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from .payload_batches import as_utc
from .payload_schema import feedback, payload_batches, payload_requests, predictions

PRUNE_CHUNK_ROWS = 10_000
"""Rows deleted per statement (one transaction each) by :meth:`PayloadStore.prune`."""


def prune(engine: Engine, older_than: datetime.datetime, max_rows: int, *,
          chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
          should_stop: Callable[[], bool] | None = None) -> int:
    """Delete the logged requests received before ``older_than`` and all but the newest
    ``max_rows`` (0: no limit); return how many were deleted. Column sets stay (one short
    row each, see :data:`input_columns`).

    Requests go a batch at a time (see :mod:`.payload_batches`): a batch is deleted once
    all its requests are older than ``older_than``, and the batch that would leave more
    than ``max_rows`` requests is deleted whole, so at most ``max_rows`` remain, fewer by
    less than a batch (a flush's requests). Batches go in chunks of up to ``chunk_rows``
    requests, each chunk its own short transaction, with a pause after each
    (``pause_s``; None: as long as the chunk took) so that on SQLite the payload writers
    of the serving processes get the write lock in between. Safe to run from several
    processes at once: a request deleted by another pruner is not counted again
    (PostgreSQL: each pruner skips the batches another is deleting).

    Rows logged one per request before batches are pruned by the same rules, after the
    batches: they are older than any batch.
    """
    cutoff = as_utc(older_than)
    deleted = _delete_batches(engine, payload_batches.c.last_received_at < cutoff,
                                   chunk_rows, pause_s, should_stop)
    deleted += _delete_chunks(engine, predictions, predictions.c.id,
                                   predictions.c.received_at < cutoff,
                                   chunk_rows, pause_s, should_stop)
    if max_rows <= 0 or (should_stop and should_stop()):
        return deleted
    newer = func.sum(payload_batches.c.requests).over(order_by=payload_batches.c.id.desc())
    counted = select(payload_batches.c.id, newer.label("newer")).subquery()
    with engine.connect() as connection:
        beyond = connection.execute(select(func.max(counted.c.id))
                                    .where(counted.c.newer > max_rows)).scalar()
        in_batches = connection.execute(
            select(func.coalesce(func.sum(payload_batches.c.requests), 0))).scalar_one()
        newest_row = connection.execute(select(func.max(predictions.c.id))).scalar()
    if beyond is not None:
        deleted += _delete_batches(engine, payload_batches.c.id <= beyond, chunk_rows,
                                        pause_s, should_stop)
    room = max_rows - int(in_batches)  # what the rows before batches may keep
    if newest_row is not None and newest_row > room and not (should_stop and should_stop()):
        deleted += _delete_chunks(engine, predictions, predictions.c.id,
                                       predictions.c.id <= newest_row - max(room, 0),
                                       chunk_rows, pause_s, should_stop)
    return deleted

def _delete_batches(engine: Engine, condition: ColumnElement[bool], chunk_rows: int,
                    pause_s: float | None, should_stop: Callable[[], bool] | None) -> int:
    """Delete the batches matching ``condition`` and their requests, in chunks of up to
    ``chunk_rows`` requests (at least one batch); how many requests were deleted."""
    chosen = (select(payload_batches.c.id, payload_batches.c.requests).where(condition)
              .order_by(payload_batches.c.id).limit(chunk_rows))
    if engine.dialect.name == "postgresql":  # concurrent pruners take other batches
        chosen = chosen.with_for_update(skip_locked=True)
    deleted = 0
    while not (should_stop and should_stop()):
        started = time.perf_counter()
        with engine.begin() as connection:
            found = connection.execute(chosen).all()
            ids: list[int] = []
            requests = 0
            for batch_id, count in found:
                if ids and requests + count > chunk_rows:
                    break
                ids.append(batch_id)
                requests += count
            if not ids:
                break
            # what this pruner deleted: another may have taken some of them meanwhile
            gone = connection.execute(delete(payload_batches)
                                      .where(payload_batches.c.id.in_(ids))
                                      .returning(payload_batches.c.id,
                                                 payload_batches.c.requests)).all()
            connection.execute(delete(payload_requests).where(
                payload_requests.c.batch_id.in_([row[0] for row in gone])))
        deleted += sum(row[1] for row in gone)
        if len(ids) == len(found) < chunk_rows:  # nothing left to choose
            break
        time.sleep(time.perf_counter() - started if pause_s is None else pause_s)
    return deleted

def prune_feedback(engine: Engine, older_than: datetime.datetime, *,
                   chunk_rows: int = PRUNE_CHUNK_ROWS, pause_s: float | None = None,
                   should_stop: Callable[[], bool] | None = None) -> int:
    """Delete feedback received before ``older_than`` (chunked as :func:`prune`)."""
    return _delete_chunks(engine, feedback, feedback.c.request_id,
                               feedback.c.received_at < as_utc(older_than),
                               chunk_rows, pause_s, should_stop)

def _delete_chunks(engine: Engine, table: Table, key: Column[Any], condition: ColumnElement[bool],
                   chunk_rows: int, pause_s: float | None,
                   should_stop: Callable[[], bool] | None) -> int:
    chosen = select(key).where(condition).limit(chunk_rows)
    if engine.dialect.name == "postgresql":  # concurrent pruners take other rows
        chosen = chosen.with_for_update(skip_locked=True)
    statement = delete(table).where(key.in_(chosen.scalar_subquery()))
    deleted = 0
    while not (should_stop and should_stop()):
        started = time.perf_counter()
        with engine.begin() as connection:
            count = connection.execute(statement).rowcount
        deleted += count
        if count < chunk_rows:
            break
        time.sleep(time.perf_counter() - started if pause_s is None else pause_s)
    return deleted
