"""Adaptive micro-batching: requests that arrive together are predicted together.

:class:`BatchedModel` wraps anything with ``predict(data, params=None)`` (a pyfunc model).
One batch is in flight at a time; requests arriving meanwhile queue up and form the next
batch, so batches grow with the load and a lone request never waits. Under load (the last
batch held more than one request) the batcher also waits up to ``max_batch_wait_ms`` for
the batch to fill. Only DataFrames with identical ``params`` are combined. If the combined
call raises, each request is retried alone, so one bad request never fails the others.

Given an ``annotate`` function (the data plane's row annotators: outlier scores...), the
batcher also annotates, in the same worker-thread call as the model and over the whole
batch at once, when any request of the batch asks (:meth:`BatchedModel.predict_annotated`).
Annotating each request in a thread of its own after the batch cost a thread hop per request:
with a 100-tree forest batched at concurrency 8, monitoring's overhead was ~240 µs per
request, most of it those hops.
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
Annotate = Callable[[pd.DataFrame, Any], dict[str, list[Any]]]
"""(frame, predictions) → each row annotator's values, one per row, under its name."""
Annotated = tuple[Any, dict[str, list[Any]]]
"""Predictions and their annotations (empty when none were asked for)."""


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
    is_annotated: bool
    future: asyncio.Future[Annotated]


Outcome = Annotated | BaseException
"""What one request of a batch gets: its predictions and annotations, or its error."""


class BatchedModel:
    """``inner`` behind an adaptive batcher; ``await predict(frame, params)`` as for one call."""

    def __init__(self, inner: Predictor, limits: BatchLimits,
                 on_batch: Callable[[int, int], None] | None = None,
                 annotate: Annotate | None = None) -> None:
        self.inner = inner
        self.limits = limits
        self._on_batch = on_batch  # (requests, rows) of every combined call
        self._annotate = annotate
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._last_size = 1

    async def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predictions for ``frame``, computed in a batch with whatever arrives alongside."""
        predictions, _ = await self.predict_annotated(frame, params, is_annotated=False)
        return predictions

    async def predict_annotated(self, frame: pd.DataFrame, params: dict[str, Any] | None = None,
                                *, is_annotated: bool = True) -> Annotated:
        """:meth:`predict`, and ``frame``'s annotations when ``is_annotated`` (and the batcher
        has an ``annotate``), computed over the whole batch in the model's thread.

        A batch in which any request asks is annotated whole: the other requests get the
        values too (the payload log then need not compute them at flush time).
        """
        if len(frame) >= self.limits.max_batch_size:
            return await asyncio.to_thread(self._alone, frame, params, is_annotated)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="greenbutton-batcher")
        future: asyncio.Future[Annotated] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(frame, params, is_annotated, future))
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
        outcomes = await asyncio.to_thread(self._predict_batch, frames, batch[0].params,
                                           [item.is_annotated for item in batch])
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(len(frame) for frame in frames))
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    def _predict_batch(self, frames: list[pd.DataFrame], params: dict[str, Any] | None,
                       wanted: list[bool]) -> list[Outcome]:
        if len(frames) > 1:
            try:
                combined_frame = pd.concat(frames, ignore_index=True)
                combined = self.inner.predict(combined_frame, params)
                sizes = [len(frame) for frame in frames]
                parts = split_predictions(combined, sizes)
                if parts is not None:
                    annotations = self._annotations(combined_frame, combined, any(wanted),
                                                    sizes)
                    return list(zip(parts, annotations, strict=True))
            except Exception:
                logger.debug("batch of %d failed; retrying each request alone", len(frames))
        return [self._outcome(frame, params, is_annotated)
                for frame, is_annotated in zip(frames, wanted, strict=True)]

    def _annotations(self, frame: pd.DataFrame, predictions: Any, is_annotated: bool,
                     sizes: list[int]) -> list[dict[str, list[Any]]]:
        """The batch's annotations cut into each request's rows (empty ones if not wanted;
        ``None`` per row for an annotator that did not give one value per row)."""
        if not is_annotated or self._annotate is None:
            return [{} for _ in sizes]
        cut = {name: split_predictions(rows, sizes) or [[None] * size for size in sizes]
               for name, rows in self._annotate(frame, predictions).items()}
        return [{name: parts[i] for name, parts in cut.items()} for i in range(len(sizes))]

    def _alone(self, frame: pd.DataFrame, params: dict[str, Any] | None,
               is_annotated: bool) -> Annotated:
        predictions = self.inner.predict(frame, params)
        if not is_annotated or self._annotate is None:
            return predictions, {}
        return predictions, self._annotate(frame, predictions)

    def _outcome(self, frame: pd.DataFrame, params: dict[str, Any] | None,
                 is_annotated: bool) -> Outcome:
        try:
            return self._alone(frame, params, is_annotated)
        except Exception as error:
            return error


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
