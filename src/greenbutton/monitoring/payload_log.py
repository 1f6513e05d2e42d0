"""The payload log sink: every answered prediction, buffered in memory, written in small
batches (``monitoring.flush_interval_s``, 0.25 s by default).

``submit`` never blocks and never waits for the database: it appends to a bounded buffer, or,
when the buffer is full, drops the record and counts it (``greenbutton_payload_dropped_total``),
so a slow database slows nothing but the log, and no loss is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .gauges import MonitoringGauges
from .payload_batches import Requests, runs
from .payload_store import PayloadStore
from .stacking import Answered, annotate_records

if TYPE_CHECKING:  # the seam is defined by serving; this module only implements it
    from ..dataplane.hooks import PredictionRecord, RowAnnotator
    from .retention import Retention

logger = logging.getLogger(__name__)
PREPARE_ROWS = 256
"""Input rows encoded for the database between two turns of the request loop (~1 ms for
one-row requests of 64 features; a request with more rows is encoded alone)."""


def requests_of(entries: Sequence[Answered],
                annotations: Sequence[dict[str, list[Any]]] | None = None) -> Requests:
    """Buffered entries (of one model version) as a batch of logged requests: inputs in
    split orientation, outputs as given, and ``annotations`` instead of the entries' own
    when given.

    numpy and pandas values are left as they are: the store's JSON encoder writes them
    natively (see :func:`~greenbutton.monitoring.payload_batches.encode`).
    """
    scored = [e.annotations for e in entries] if annotations is None else list(annotations)
    return Requests(
        request_ids=[e.request_id for e in entries],
        endpoints=[e.endpoint for e in entries],
        received_at=[e.received_at for e in entries],
        latency_s=[float(e.latency_s) for e in entries],
        has_outlier=[_has_outlier(a) for a in scored],
        inputs=[split_rows(e.frame) if e.values is None else
                {"columns": _column_names(e.columns), "data": np.ascontiguousarray(e.values)}
                for e in entries],
        predictions=[e.predictions for e in entries],
        annotations=scored)


def _version_of(entry: Answered) -> tuple[str, str | None]:
    return entry.model_name, entry.model_version


def _rows_of(entry: Answered) -> int:
    return entry.rows


def _has_outlier(annotations: dict[str, list[Any]]) -> bool:
    return any(isinstance(o, dict) and o.get("is_outlier")
               for o in annotations.get("outliers", ()))


def split_rows(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"columns": [...], "data": rows}``; a numeric frame stays one array (NaN → null)."""
    values = frame.to_numpy()
    if values.dtype.kind not in "biuf":
        values = frame.astype(object).where(frame.notna(), None).to_numpy()
    return {"columns": _column_names(frame.columns), "data": np.ascontiguousarray(values)}


class _ColumnNames:
    """Column names as strings; remembers the last index and its list of names.

    Frames the data plane builds share one index. Others (columns sent in another order, a
    model without a signature) bring a new index per request, usually with the same names:
    the last list is then handed out again, without listing the names, and the store, which
    recognises a set of names by the list's identity, does not hash it again (12 µs → 1 µs
    per record with 64 names).
    """

    def __init__(self) -> None:
        self._last: tuple[pd.Index | None, list[str]] = (None, [])

    def __call__(self, columns: pd.Index) -> list[str]:
        index, names = self._last
        if columns is not index:
            if index is None or not _same_names(columns, index):
                names = [str(c) for c in columns.tolist()]
            self._last = (columns, names)  # one assignment: threads see a consistent pair
        return names


def _same_names(a: pd.Index, b: pd.Index) -> bool:
    # comparing the backing arrays: 0.5 µs; Index.equals 3 µs, listing 64 string names 7 µs
    if isinstance(a, pd.MultiIndex) or isinstance(b, pd.MultiIndex):  # no single array
        return bool(a.equals(b))
    return bool(a.array.equals(b.array))


_column_names = _ColumnNames()


class PayloadLog:
    """A :class:`~greenbutton.dataplane.hooks.PredictionSink` writing to a :class:`PayloadStore`.

    ``annotators``: the row annotators of the serving process. Records that arrive without
    their values (endpoints that do not render them, such as ``/invocations``) are annotated
    at flush time, all of a flush in one call per annotator.
    """

    def __init__(self, store: PayloadStore, gauges: MonitoringGauges, *, capacity: int,
                 flush_interval_s: float, annotators: Sequence[RowAnnotator] = (),
                 retention: Retention | None = None) -> None:
        self.store, self.gauges, self.annotators = store, gauges, list(annotators)
        self.retention = retention  # pruned after successful flushes (monitoring/retention.py)
        self.capacity, self.flush_interval_s = capacity, flush_interval_s
        self._buffer: deque[Answered] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def submit(self, record: PredictionRecord) -> None:
        """Buffer ``record``; drop and count it when the buffer is full."""
        if len(self._buffer) >= self.capacity:
            self.gauges.payload_dropped.labels(record.model_name,
                                               record.model_version or "").inc()
            return
        self._buffer.append(Answered.of(record))  # the request's DataFrame is not kept
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def pending(self, request_id: str) -> bool:
        """Whether a record with ``request_id`` is still waiting in the buffer."""
        return any(r.request_id == request_id for r in list(self._buffer))

    async def flush(self) -> None:
        """Write everything buffered now (serialised: one writer at a time).

        Annotating (vectorised numpy), compressing and the insert (mostly the driver) run in
        a thread; encoding entries needs the interpreter lock throughout, so it runs here on
        the loop in batches of up to ``PREPARE_ROWS`` input rows with requests served in
        between: in a thread it would hold the lock against the loop in 5 ms turns.
        """
        async with self._lock:
            batch = [self._buffer.popleft() for _ in range(len(self._buffer))]
            if not batch:
                return
            annotations: list[dict[str, list[Any]]] | None = None
            try:
                if self.annotators:
                    annotations = await asyncio.to_thread(annotate_records, self.annotators,
                                                          batch)
                prepared = []
                for start, stop in runs(batch, _version_of, PREPARE_ROWS, _rows_of):
                    prepared.append(self.store.prepare_batch(
                        batch[start].model_name, batch[start].model_version,
                        requests_of(batch[start:stop], None if annotations is None
                                    else annotations[start:stop])))
                    await asyncio.sleep(0)
                await asyncio.to_thread(self.store.write_prepared, prepared)
                if self.retention is not None:
                    self.retention.maybe_prune()  # starts a background prune when due
            except Exception:
                logger.exception("writing %d payload records failed; will retry", len(batch))
                if annotations is not None:  # a retry does not score (and count) again
                    batch = [e._replace(annotations=a)
                             for e, a in zip(batch, annotations, strict=True)]
                self._requeue(batch)

    def _requeue(self, batch: list[Answered]) -> None:
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
        if self.retention is not None:
            await self.retention.aclose()
