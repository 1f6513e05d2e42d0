"""The payload log sink: every answered prediction, buffered in memory, written in small
batches (``monitoring.flush_interval_s``, 0.25 s by default).

``submit`` never blocks and never waits for the database: it appends to a buffer bounded in
records and in bytes (``monitoring.buffer_size``, ``monitoring.buffer_max_bytes``), or, when
either is reached, drops the record and counts it (``greenbutton_payload_dropped_total``), so
a slow or failing database (a full disk) slows nothing but the log, grows no memory, and no
loss is silent. The bytes held count the batch being written too (until it is written or
dropped), and show as ``greenbutton_payload_buffer_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .gauges import MonitoringGauges
from .payload_batches import Requests, runs
from .payload_store import PayloadStore, PreparedBatch
from .stacking import Answered, annotate_records

if TYPE_CHECKING:  # the seam is defined by serving; this module only implements it
    from ..dataplane.hooks import PredictionRecord, RowAnnotator
    from .retention import Retention

logger = logging.getLogger(__name__)
BATCH_SHARE = 8
"""A flush writes batches of at most ``max_bytes / BATCH_SHARE`` bytes of records: their
encoded copy (JSON, ~2.5 times a float array) then stays a fraction of the bound."""
FAILURE_LOG_INTERVAL_S = 30.0
"""Failed writes are logged at most this often (with how many failed since)."""
RECORD_OVERHEAD_BYTES = 1024
"""What a buffered record costs besides its arrays (ids, timestamps, the tuple, dicts)."""
ANNOTATION_BYTES_PER_ROW = 128
"""Per input row: its annotations (outlier flag and score, adversarial flag)."""
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


def size_of(entry: Answered) -> int:
    """Bytes a buffered entry keeps alive, approximately (its arrays exactly; a frame of
    objects by pandas' deep count, which only frames that are not one numeric block need)."""
    if entry.values is not None:
        inputs = int(entry.values.nbytes)
    elif entry.frame is not None:
        inputs = int(entry.frame.memory_usage(index=False, deep=True).sum())
    else:
        inputs = 0
    return (RECORD_OVERHEAD_BYTES + inputs + _nbytes(entry.predictions)
            + ANNOTATION_BYTES_PER_ROW * entry.rows)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=False, deep=True).sum())
    if isinstance(value, pd.Series):
        return int(value.memory_usage(index=False, deep=True))
    if isinstance(value, list | tuple):
        return 32 * len(value)
    return 64


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
                 retention: Retention | None = None, max_bytes: int | None = None) -> None:
        self.store, self.gauges, self.annotators = store, gauges, list(annotators)
        self.retention = retention  # pruned after successful flushes (monitoring/retention.py)
        self.capacity, self.flush_interval_s = capacity, flush_interval_s
        self.max_bytes = max_bytes
        self._buffer: deque[tuple[Answered, int]] = deque()
        self._held_bytes = 0  # the buffer's entries and the batch being written
        self._failures, self._failure_logged_at = 0, -FAILURE_LOG_INTERVAL_S
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        gauges.payload_buffer_max_bytes.set(max_bytes or 0)

    @property
    def held_bytes(self) -> int:
        """Bytes held by buffered records and the batch being written (approximate)."""
        return self._held_bytes

    def submit(self, record: PredictionRecord) -> None:
        """Buffer ``record``; drop and count it when the buffer is full (records or bytes)."""
        entry = Answered.of(record)  # the request's DataFrame is not kept
        size = size_of(entry)
        if len(self._buffer) >= self.capacity or (
                self.max_bytes is not None and self._held_bytes + size > self.max_bytes):
            self._drop(entry)
            return
        self._buffer.append((entry, size))
        self._hold(size)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def pending(self, request_id: str) -> bool:
        """Whether a record with ``request_id`` is still waiting in the buffer."""
        return any(r.request_id == request_id for r, _ in list(self._buffer))

    async def flush(self) -> None:
        """Write everything buffered now (serialised: one writer at a time), a batch of at
        most an eighth of ``max_bytes`` at a time; stop at the first failed write (what is
        left waits for the next flush).

        Annotating (vectorised numpy), compressing and the insert (mostly the driver) run in
        a thread; encoding entries needs the interpreter lock throughout, so it runs here on
        the loop in batches of up to ``PREPARE_ROWS`` input rows with requests served in
        between: in a thread it would hold the lock against the loop in 5 ms turns.
        """
        async with self._lock:
            while self._buffer and await self._write_batch(self._take_batch()):
                pass

    def _take_batch(self) -> list[tuple[Answered, int]]:
        """The oldest entries, up to the batch budget in bytes (at least one)."""
        budget = None if self.max_bytes is None else self.max_bytes // BATCH_SHARE
        taken = [self._buffer.popleft()]
        total = taken[0][1]
        while self._buffer and (budget is None or total + self._buffer[0][1] <= budget):
            taken.append(self._buffer.popleft())
            total += taken[-1][1]
        return taken

    async def _write_batch(self, taken: list[tuple[Answered, int]]) -> bool:
        """Write ``taken``; on failure put it back (or drop what no longer fits). The
        encoded copy counts as held while it exists."""
        batch = [entry for entry, _ in taken]
        annotations: list[dict[str, list[Any]]] | None = None
        encoded = 0
        prepared: list[PreparedBatch] = []
        try:
            if self.annotators:
                annotations = await asyncio.to_thread(annotate_records, self.annotators, batch)
            for start, stop in runs(batch, _version_of, PREPARE_ROWS, _rows_of):
                prepared.append(self.store.prepare_batch(
                    batch[start].model_name, batch[start].model_version,
                    requests_of(batch[start:stop], None if annotations is None
                                else annotations[start:stop])))
                encoded += len(prepared[-1].encoded)
                self._hold(len(prepared[-1].encoded))
                await asyncio.sleep(0)
            await asyncio.to_thread(self.store.write_prepared, prepared)
        except Exception as error:
            prepared.clear()
            self._hold(-encoded)
            self._report_failure(error, len(batch))
            if annotations is not None:  # a retry does not score (and count) again
                taken = [(e._replace(annotations=a), size) for (e, size), a
                         in zip(taken, annotations, strict=True)]
            self._requeue(taken)
            return False
        prepared.clear()
        self._hold(-encoded - sum(size for _, size in taken))
        if self.retention is not None:
            self.retention.maybe_prune()  # starts a background prune when due
        return True

    def _requeue(self, taken: list[tuple[Answered, int]]) -> None:
        """Put a failed batch back in front, as far as the record bound allows (its bytes
        are still held: new records were only let in beside them); drop the rest."""
        room = max(0, self.capacity - len(self._buffer))
        for entry, size in taken[room:]:
            self._hold(-size)
            self._drop(entry)
        self._buffer.extendleft(reversed(taken[:room]))

    def _report_failure(self, error: Exception, records: int) -> None:
        """Log a failed write at most every ``FAILURE_LOG_INTERVAL_S`` (a full disk fails
        every flush). No traceback at error level: a kept log record's traceback would keep
        the batch alive (its frames hold it), which is the memory this bound protects."""
        self._failures += 1
        now = time.monotonic()
        if now - self._failure_logged_at < FAILURE_LOG_INTERVAL_S:
            return
        logger.error("writing %d payload records failed (%s: %s; %d failed writes since the "
                     "last report); they wait in the buffer, which drops what does not fit",
                     records, type(error).__name__, error, self._failures)
        if logger.isEnabledFor(logging.DEBUG):  # as text: no frame outlives this call
            logger.debug("the failed payload write:\n%s",
                         "".join(traceback.format_exception(error)))
        self._failure_logged_at, self._failures = now, 0

    def _hold(self, size: int) -> None:
        self._held_bytes += size
        self.gauges.payload_buffer_bytes.set(self._held_bytes)

    def _drop(self, entry: Answered) -> None:
        self.gauges.payload_dropped.labels(entry.model_name, entry.model_version or "").inc()

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
