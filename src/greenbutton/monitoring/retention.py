"""Payload-log retention: old and surplus rows are deleted off the request path.

A serving process that writes the payload log also prunes it: after a successful flush the
log calls :meth:`Retention.maybe_prune`, which, at most every ``payload_prune_interval_s``,
starts one background task that deletes (in a thread, in short chunks, see
:meth:`~greenbutton.monitoring.payload_store.PayloadStore.prune`)

- payload rows received more than ``payload_retention_days`` ago, and all but the newest
  ``payload_max_rows`` (0: no limit);
- feedback received more than ``payload_retention_days`` ago (feedback always arrives after
  its prediction, so the age rule never leaves a prediction's feedback behind it; feedback of
  rows removed by ``payload_max_rows`` stays until it is that old itself).

Every worker and replica of a deployment prunes the same store; that is safe (a row deleted
by one is not deleted or counted again by another) and cheap when there is nothing to do (two
index look-ups). A failed prune is logged, counted and tried again one interval later; it
never delays or drops payload records.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Callable

from ..config import MonitoringSettings
from .gauges import MonitoringGauges
from .payload_batches import utc_now
from .payload_pruning import PRUNE_CHUNK_ROWS
from .payload_store import PayloadStore

logger = logging.getLogger(__name__)


class Retention:
    """Prunes ``store`` at most every ``interval_s`` (±10 % so workers drift apart)."""

    def __init__(self, store: PayloadStore, *, max_age: datetime.timedelta, max_rows: int,
                 interval_s: float, gauges: MonitoringGauges | None = None,
                 chunk_rows: int = PRUNE_CHUNK_ROWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.max_age, self.max_rows = store, max_age, max_rows
        self.interval_s, self.gauges, self.chunk_rows, self.clock = (interval_s, gauges,
                                                                     chunk_rows, clock)
        self._due = clock()  # the first flush prunes: a restart catches up at once
        self._task: asyncio.Task[None] | None = None
        self._is_stopping = False

    @classmethod
    def from_settings(cls, store: PayloadStore, settings: MonitoringSettings,
                      gauges: MonitoringGauges | None = None) -> Retention:
        """The retention ``settings`` ask for (``payload_retention_days`` and so on)."""
        return cls(store, max_age=datetime.timedelta(days=settings.payload_retention_days),
                   max_rows=settings.payload_max_rows,
                   interval_s=settings.payload_prune_interval_s, gauges=gauges)

    @property
    def is_running(self) -> bool:
        """Whether a prune is in progress."""
        return self._task is not None and not self._task.done()

    def maybe_prune(self) -> None:
        """Start a prune in the background if one is due and none is running; never waits."""
        if self._is_stopping or self.is_running or self.clock() < self._due:
            return
        self._due = self.clock() + self.interval_s * random.uniform(0.9, 1.1)
        self._task = asyncio.get_running_loop().create_task(self._prune_logged())

    async def prune(self) -> int:
        """Prune now (in a thread); return the payload rows deleted."""
        cutoff = utc_now() - self.max_age
        stop = self._should_stop
        deleted = await asyncio.to_thread(self.store.prune, cutoff, self.max_rows,
                                          chunk_rows=self.chunk_rows, should_stop=stop)
        if self.gauges is not None and deleted:
            self.gauges.payload_pruned.inc(deleted)
        feedback = await asyncio.to_thread(self.store.prune_feedback, cutoff,
                                           chunk_rows=self.chunk_rows, should_stop=stop)
        if deleted or feedback:
            logger.info("payload log pruned: %d rows and %d feedback records before %s%s",
                        deleted, feedback, cutoff.isoformat(timespec="seconds"),
                        f" or beyond the newest {self.max_rows}" if self.max_rows else "")
        return deleted

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except Exception:
            logger.exception("pruning the payload log failed; will retry in %.0f s",
                             self.interval_s)
            if self.gauges is not None:
                self.gauges.payload_prune_failed.inc()

    def _should_stop(self) -> bool:
        return self._is_stopping

    async def aclose(self) -> None:
        """Stop a running prune after its current chunk, and wait for it."""
        self._is_stopping = True
        if self._task is not None:
            await self._task
            self._task = None
