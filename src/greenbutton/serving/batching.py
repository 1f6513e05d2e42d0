"""Adaptive micro-batching: requests that arrive together are predicted together.

:class:`BatchedModel` wraps anything with ``predict(data, params=None)`` (a pyfunc model).
One batch is in flight at a time; requests arriving meanwhile queue up and form the next
batch, so batches grow with the load and a lone request never waits. Under load (the last
batch held more than one request) the batcher also waits up to ``max_batch_wait_ms`` for
the batch to fill. Only DataFrames with identical ``params`` are combined. If the combined
call raises, each request is retried alone, so one bad request never fails the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class Predictor(Protocol):
    """What can be batched: a blocking ``predict`` (``mlflow.pyfunc.PyFuncModel`` fits)."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predictions for ``data``."""
        ...


@dataclass(frozen=True)
class BatchLimits:
    """How large a batch may grow and how long a request may wait for it to fill."""

    max_batch_size: int
    max_batch_wait_ms: float

    @property
    def is_batching(self) -> bool:
        """True when batches of more than one row may form."""
        return self.max_batch_size > 1


def batch_limits_of(python_model: object, max_batch_size: int | None,
                    max_batch_wait_ms: float | None) -> BatchLimits:
    """The model class's declared limits (read by attribute), overridden by settings."""
    declared_size = getattr(python_model, "max_batch_size", 1)
    declared_wait = getattr(python_model, "max_batch_wait_ms", 2.0)
    size = max_batch_size if max_batch_size is not None else declared_size
    wait = max_batch_wait_ms if max_batch_wait_ms is not None else declared_wait
    return BatchLimits(int(size) if isinstance(size, int | float) else 1,
                       float(wait) if isinstance(wait, int | float) else 2.0)


@dataclass
class _Pending:
    frame: pd.DataFrame
    params: dict[str, Any] | None
    future: asyncio.Future[Any]


Outcome = tuple[Any, BaseException | None]


class BatchedModel:
    """``inner`` behind an adaptive batcher; ``await predict(frame, params)`` as for one call."""

    def __init__(self, inner: Predictor, limits: BatchLimits,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        self.inner = inner
        self.limits = limits
        self._on_batch = on_batch  # (requests, rows) of every combined call
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._last_size = 1

    async def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predictions for ``frame``, computed in a batch with whatever arrives alongside."""
        if len(frame) >= self.limits.max_batch_size:
            return await asyncio.to_thread(self.inner.predict, frame, params)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="greenbutton-batcher")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(frame, params, future))
        self._wakeup.set()
        return await future

    async def aclose(self) -> None:
        """Stop the batching task (pending requests are cancelled)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for item in self._pending:
            item.future.cancel()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = await self._collect()
            if batch:
                await self._dispatch(batch)

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_batch_wait_ms / 1000
        batch: list[_Pending] = []
        rows = self._take(batch, 0)
        # wait for more only under load: a lone request at low load is answered at once
        while batch and self._last_size > 1 and rows < self.limits.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            before = rows
            rows = self._take(batch, rows)
            if rows == before and loop.time() >= deadline:
                break
        return batch

    def _take(self, batch: list[_Pending], rows: int) -> int:
        while self._pending:
            item = self._pending[0]
            if item.future.done():  # cancelled by a timeout while queued
                self._pending.popleft()
                continue
            if batch and (item.params != batch[0].params
                          or rows + len(item.frame) > self.limits.max_batch_size):
                break
            batch.append(self._pending.popleft())
            rows += len(item.frame)
        return rows

    async def _dispatch(self, batch: list[_Pending]) -> None:
        self._last_size = len(batch)
        frames = [item.frame for item in batch]
        outcomes = await asyncio.to_thread(self._predict_batch, frames, batch[0].params)
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(len(frame) for frame in frames))
        for item, (value, error) in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(value)

    def _predict_batch(self, frames: list[pd.DataFrame], params: dict[str, Any] | None
                       ) -> list[Outcome]:
        if len(frames) > 1:
            try:
                combined = self.inner.predict(pd.concat(frames, ignore_index=True), params)
                parts = split_predictions(combined, [len(frame) for frame in frames])
                if parts is not None:
                    return [(part, None) for part in parts]
            except Exception:
                logger.debug("batch of %d failed; retrying each request alone", len(frames))
        return [self._predict_alone(frame, params) for frame in frames]

    def _predict_alone(self, frame: pd.DataFrame, params: dict[str, Any] | None) -> Outcome:
        try:
            return self.inner.predict(frame, params), None
        except Exception as error:
            return None, error


def split_predictions(predictions: Any, sizes: list[int]) -> list[Any] | None:
    """``predictions`` cut into consecutive parts of ``sizes`` rows; None if the rows differ."""
    if not hasattr(predictions, "__len__") or len(predictions) != sum(sizes):
        return None
    bounds = np.cumsum([0, *sizes])
    if isinstance(predictions, pd.DataFrame | pd.Series):
        return [predictions.iloc[start:stop].reset_index(drop=True)
                for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
    if isinstance(predictions, np.ndarray | list):
        return [predictions[start:stop] for start, stop in zip(bounds[:-1], bounds[1:],
                                                                strict=True)]
    return None
