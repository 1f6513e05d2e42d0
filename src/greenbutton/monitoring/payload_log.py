"""The payload log sink: every answered prediction, buffered in memory, written every second.

``submit`` never blocks and never waits for the database: it appends to a bounded buffer, or,
when the buffer is full, drops the record and counts it (``greenbutton_payload_dropped_total``),
so a slow database slows nothing but the log, and no loss is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .gauges import MonitoringGauges
from .payload_store import PayloadStore

if TYPE_CHECKING:  # the seam is defined by serving; this module only implements it
    from ..serving.hooks import PredictionRecord

logger = logging.getLogger(__name__)


def to_row(record: PredictionRecord) -> dict[str, Any]:
    """A ``gb_predictions`` row for ``record`` (inputs as records, outputs as a JSON list)."""
    outliers = record.annotations.get("outliers", [])
    return {
        "request_id": record.request_id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "endpoint": record.endpoint,
        "inputs": split_rows(record.inputs),
        "predictions": jsonable(record.predictions),
        "annotations": jsonable(record.annotations),
        "has_outlier": any(isinstance(o, dict) and o.get("is_outlier") for o in outliers),
        "latency_s": float(record.latency_s),
        "received_at": record.received_at,
    }


def split_rows(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"columns": [...], "data": [[...], ...]}``, fast for numeric frames (NaN → None)."""
    values = frame.to_numpy()
    if values.dtype.kind == "f" and not np.isnan(values).any():
        data = values.tolist()
    else:
        data = jsonable(frame.astype(object).where(frame.notna(), None).to_numpy())
    return {"columns": [str(c) for c in frame.columns], "data": data}


def jsonable(value: Any) -> Any:
    """numpy / pandas values turned into plain JSON types (NaN → None)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


class PayloadLog:
    """A :class:`~greenbutton.serving.hooks.PredictionSink` writing to a :class:`PayloadStore`."""

    def __init__(self, store: PayloadStore, gauges: MonitoringGauges, *, capacity: int,
                 flush_interval_s: float) -> None:
        self.store, self.gauges = store, gauges
        self.capacity, self.flush_interval_s = capacity, flush_interval_s
        self._buffer: deque[PredictionRecord] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def submit(self, record: PredictionRecord) -> None:
        """Buffer ``record``; drop and count it when the buffer is full."""
        if len(self._buffer) >= self.capacity:
            self.gauges.payload_dropped.labels(record.model_name, record.model_version or "").inc()
            return
        self._buffer.append(record)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def pending(self, request_id: str) -> bool:
        """Whether a record with ``request_id`` is still waiting in the buffer."""
        return any(r.request_id == request_id for r in list(self._buffer))

    async def flush(self) -> None:
        """Write everything buffered now (serialised: one writer at a time)."""
        async with self._lock:
            batch = [self._buffer.popleft() for _ in range(len(self._buffer))]
            if not batch:
                return
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                logger.exception("writing %d payload records failed; will retry", len(batch))
                self._requeue(batch)

    def _write(self, batch: list[PredictionRecord]) -> None:
        # converting to rows happens here, in the worker thread, not on the event loop
        self.store.write_predictions([to_row(r) for r in batch])

    def _requeue(self, batch: list[PredictionRecord]) -> None:
        room = max(0, self.capacity - len(self._buffer))
        for record in batch[room:]:
            self.gauges.payload_dropped.labels(record.model_name, record.model_version or "").inc()
        self._buffer.extendleft(reversed(batch[:room]))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def aclose(self) -> None:
        """Stop the periodic flush and write what is left."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()
