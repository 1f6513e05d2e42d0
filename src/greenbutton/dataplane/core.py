"""The transport-free core every protocol calls: load, warm up and predict, with metrics."""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from ..config import ServingSettings
from ..errors import ModelNotReady, RequestTimeout, SchemaMismatch
from ..ids import new_request_id
from .batching import BatchedModel, BatchLimits, batch_limits_of
from .hooks import PredictionRecord, PredictionSink, RowAnnotator, ServingHooks, utc_now
from .loading import ServedModel
from .metrics import Metrics
from .schema import RequestSchema

logger = logging.getLogger(__name__)

INLINE_BUDGET_S = 0.002
"""Models whose calls average less than this run on the event loop: for them a thread hop
costs more than the call, and waiting for the GIL between threads makes the latency tail."""
Scored = tuple[Any, dict[str, list[Any]]]
"""Predictions and each annotator's values."""
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_REASON_CHARS = 400
"""Longest error detail a client gets back from MLflow's parsing or enforcement."""


def request_id_from(header: str | None) -> str:
    """The caller's request id if it is a sane token, else a fresh time-ordered one."""
    if header is not None and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return new_request_id()


@dataclass(frozen=True)
class PredictionResult:
    """What one model call returned, and who answered it."""

    predictions: Any
    request_id: str
    model_name: str
    model_version: str | None
    rows: int
    latency_s: float
    annotations: dict[str, list[Any]] = field(default_factory=dict)
    """Each row annotator's values, one per row, under the annotator's name."""


class DataPlane:
    """Holds the served model and runs predictions on it, off the event loop and on a budget.

    ``annotators`` run after each prediction on DataFrame inputs; ``sinks`` receive a
    :class:`~greenbutton.dataplane.hooks.PredictionRecord` of every answered prediction.
    """

    def __init__(
        self,
        settings: ServingSettings,
        metrics: Metrics,
        model: ServedModel | None = None,
        *,
        annotators: Sequence[RowAnnotator] = (),
        sinks: Sequence[PredictionSink] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.annotators: list[RowAnnotator] = list(annotators)
        self.sinks: list[PredictionSink] = list(sinks)
        self.load_error: BaseException | None = None
        self.is_ready = False
        self.is_draining = False
        self.batcher: BatchedModel | None = None
        self.call_s: float | None = None
        """Moving average of one unbatched model call (None until the first)."""
        self._model: ServedModel | None = None
        self._request_schema: RequestSchema | None = None
        if model is not None:
            self.attach(model)
    @property
    def name(self) -> str:
        """Name the model answers as ("" until it is loaded)."""
        return self._model.name if self._model is not None else ""

    @property
    def version(self) -> str | None:
        """Registry version the model answers as (None until loaded or when unregistered)."""
        return self._model.version if self._model is not None else None

    @property
    def model(self) -> ServedModel:
        """The loaded model; ModelNotReady while it is loading."""
        if self._model is None:
            raise ModelNotReady(self.status_message())
        return self._model

    @property
    def request_schema(self) -> RequestSchema:
        """The ``/predict`` request schema built from the model's signature."""
        if self._request_schema is None:
            raise ModelNotReady(self.status_message())
        return self._request_schema

    def running_calls(self) -> list[tuple[float, int]]:
        """(start, thread id) of the model's calls running now (see :mod:`.watchdog`)."""
        return self._model.calls.snapshot() if self._model is not None else []

    def status_message(self) -> str:
        """Why the model is not ready, or "ready"."""
        if self.is_draining:
            return "shutting down"
        if self.load_error is not None:
            return f"model failed to load: {self.load_error}"
        if self._model is None:
            return "model is loading"
        return "ready" if self.is_ready else "model is warming up"

    def attach(self, model: ServedModel) -> None:
        """Serve ``model``; it becomes ready after :meth:`warm_up`."""
        metadata = model.pyfunc.metadata
        self._request_schema = RequestSchema.from_mlflow(
            metadata.get_input_schema(),  # type: ignore[no-untyped-call]
            params=metadata.get_params_schema(),  # type: ignore[no-untyped-call]
            max_rows=self.settings.max_rows,
        )
        self._model = model
        self.metrics.set_ready(model=model.name, version=model.version, is_ready=False)
        limits = batch_limits_of(
            model.python_model, self.settings.max_batch_size, self.settings.max_batch_wait_ms
        )
        self.batcher = self._batcher(model, limits) if limits.is_batching else None

    def _batcher(self, model: ServedModel, limits: BatchLimits) -> BatchedModel:
        def observe(requests: int, rows: int) -> None:
            self.metrics.observe_batch(
                model=model.name, version=model.version, requests=requests, rows=rows
            )

        return BatchedModel(model, limits, observe, annotate=self._annotate)

    def add_hooks(
        self, annotators: Sequence[RowAnnotator] = (), sinks: Sequence[PredictionSink] = ()
    ) -> None:
        """Add row annotators and prediction sinks (wiring calls this once the model loaded)."""
        self.annotators.extend(annotators)
        self.sinks.extend(sinks)

    async def aclose(self) -> None:
        """Stop batching and flush every sink (graceful shutdown)."""
        if self.batcher is not None:
            await self.batcher.aclose()
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                logger.exception("flushing prediction sink %r failed", sink)

    async def load(
        self,
        loader: Callable[[], ServedModel],
        hooks: Callable[[ServedModel], ServingHooks] | None = None,
    ) -> None:
        """Load in a thread, attach, add ``hooks``, warm up; a failure is kept in load_error."""
        try:
            model = await asyncio.to_thread(loader)
            self.attach(model)
            if hooks is not None:
                built = hooks(model)
                self.add_hooks(built.annotators, built.sinks)
            await self.warm_up()
        except Exception as error:
            logger.exception("loading the model failed")
            self.load_error = error

    async def warm_up(self) -> None:
        """Predict the model's input example once (when it has one), then report ready."""
        model = self.model
        example = model.input_example
        if example is not None:
            await self._call(example, None)
        self.is_ready = True
        self.metrics.set_ready(model=model.name, version=model.version, is_ready=True)

    async def predict(
        self,
        frame: Any,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        endpoint: str = "/predict",
        with_annotations: bool = True,
        values: np.ndarray | None = None,
    ) -> PredictionResult:
        """Score ``frame`` within the request timeout; SchemaMismatch if MLflow rejects it.

        ``values``: ``frame``'s rows as one numeric array, when the caller built the frame from
        one; annotators that can (``annotate_with_values``) and sinks read it instead of
        converting the frame again.

        ``with_annotations=False``: the caller does not render the row annotators' values, so
        they are not computed here; sinks receive the record without them and may compute
        them in batches (the payload log does), which costs a fraction of once per request.
        With a batching model, a request that shares its batch with one that asked for them
        gets them anyway: a batch is annotated whole, in the model's thread.
        """
        model = self.model
        if model.nulls is not None:
            model.nulls.check(frame, values)
        received_at = utc_now()
        started = time.perf_counter()
        predictions, annotations = await self._call(frame, params, with_annotations, values)
        latency_s = time.perf_counter() - started
        rows = len(frame) if hasattr(frame, "__len__") else 1
        self.metrics.observe_prediction(
            model=model.name, version=model.version, rows=rows, latency_s=latency_s
        )
        result = PredictionResult(
            predictions=predictions,
            request_id=request_id or request_id_from(None),
            model_name=model.name,
            model_version=model.version,
            rows=rows,
            latency_s=latency_s,
            annotations=annotations,
        )
        if self.sinks and isinstance(frame, pd.DataFrame):
            self._submit(result, frame, endpoint, received_at, values)
        return result

    async def _call(
        self, data: Any, params: dict[str, Any] | None, with_annotations: bool = True,
        values: np.ndarray | None = None,
    ) -> Scored:
        annotate = with_annotations and isinstance(data, pd.DataFrame)
        if self.batcher is None and self.call_s is not None and self.call_s < INLINE_BUDGET_S:
            return self._predict_and_annotate(data, params, annotate, values)
        # the worker thread cannot be interrupted: on timeout it finishes in the background
        try:
            return await asyncio.wait_for(
                self._score(data, params, annotate, values),
                timeout=self.settings.request_timeout_s,
            )
        except TimeoutError:
            raise RequestTimeout(
                f"prediction took longer than {self.settings.request_timeout_s} s"
            ) from None

    async def _score(self, data: Any, params: dict[str, Any] | None, annotate: bool,
                     values: np.ndarray | None) -> Scored:
        if self.batcher is not None and isinstance(data, pd.DataFrame):
            try:  # annotated with the batch, in the model's thread
                return await self.batcher.predict_annotated(
                    data, params, is_annotated=annotate and bool(self.annotators))
            except MlflowException as error:
                raise _mismatch(error) from error
        return await asyncio.to_thread(self._predict_and_annotate, data, params, annotate,
                                       values)

    def _predict_and_annotate(
        self, data: Any, params: dict[str, Any] | None, annotate: bool,
        values: np.ndarray | None = None,
    ) -> Scored:
        started = time.perf_counter()
        try:
            predictions = self.model.predict(data, params)
        except MlflowException as error:
            # PyFuncModel.predict enforces the signature and raises MlflowException on mismatch
            raise _mismatch(error) from error
        finally:
            elapsed_s = time.perf_counter() - started
            previous = self.call_s
            self.call_s = elapsed_s if previous is None else 0.8 * previous + 0.2 * elapsed_s
        if not self.annotators or not annotate:
            return predictions, {}
        return predictions, self._annotate(data, predictions, values)

    def _annotate(self, frame: pd.DataFrame, predictions: Any,
                  values: np.ndarray | None = None) -> dict[str, list[Any]]:
        annotations: dict[str, list[Any]] = {}
        for annotator in self.annotators:
            with_values = getattr(annotator, "annotate_with_values", None)
            try:
                if values is not None and with_values is not None:
                    row_values = list(with_values(frame, values, predictions))
                else:
                    row_values = list(annotator.annotate(frame, predictions))
                if len(row_values) != len(frame):
                    raise ValueError(f"{len(row_values)} values for {len(frame)} rows")
            except Exception:  # a monitor's bug must not fail the prediction
                logger.exception("row annotator %r failed", annotator.name)
                row_values = [None] * len(frame)
            annotations[annotator.name] = row_values
        return annotations

    def _submit(
        self, result: PredictionResult, frame: pd.DataFrame, endpoint: str,
        received_at: datetime.datetime, values: np.ndarray | None = None,
    ) -> None:
        record = PredictionRecord(
            request_id=result.request_id,
            model_name=result.model_name,
            model_version=result.model_version,
            endpoint=endpoint,
            inputs=frame,
            predictions=result.predictions,
            annotations=result.annotations,
            latency_s=result.latency_s,
            received_at=received_at,
            values=values,
        )
        for sink in self.sinks:
            try:
                sink.submit(record)
            except Exception:
                logger.exception("prediction sink %r failed", sink)


def _mismatch(error: MlflowException) -> SchemaMismatch:
    # PyFuncModel.predict wraps the enforcement error in a message that prints the whole
    # input (a DataFrame of every row); the error it wraps says what is wrong
    inner = error.__context__ if isinstance(error.__context__, Exception) else error
    return SchemaMismatch(f"input does not match the model signature: {mlflow_reason(inner)}")


def mlflow_reason(error: BaseException) -> str:
    """What MLflow (or pandas under it) says is wrong, cut to a readable length."""
    reason = error.message if isinstance(error, MlflowException) else str(error)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return reason
