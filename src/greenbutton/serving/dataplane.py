"""The transport-free core every protocol calls: load, warm up and predict, with metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException

from ..config import ServingSettings
from ..errors import ModelNotReady, RequestTimeout, SchemaMismatch
from ..monitoring.metrics import Metrics
from .loading import ServedModel
from .schema import RequestSchema

logger = logging.getLogger(__name__)

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The caller's request id if it is a sane token, else a fresh uuid4 hex."""
    if header is not None and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PredictionResult:
    """What one model call returned, and who answered it."""

    predictions: Any
    request_id: str
    model_name: str
    model_version: str | None
    rows: int
    latency_s: float


class DataPlane:
    """Holds the served model and runs predictions on it, off the event loop and on a budget."""

    def __init__(
        self, settings: ServingSettings, metrics: Metrics, model: ServedModel | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.load_error: BaseException | None = None
        self.is_ready = False
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

    def status_message(self) -> str:
        """Why the model is not ready, or "ready"."""
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

    async def load(self, loader: Callable[[], ServedModel]) -> None:
        """Run the blocking ``loader`` in a thread, attach and warm up; failures are kept."""
        try:
            self.attach(await asyncio.to_thread(loader))
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
        self, frame: Any, params: dict[str, Any] | None = None, *, request_id: str | None = None
    ) -> PredictionResult:
        """Score ``frame`` within the request timeout; SchemaMismatch if MLflow rejects it."""
        model = self.model
        started = time.perf_counter()
        predictions = await self._call(frame, params)
        latency_s = time.perf_counter() - started
        rows = len(frame) if hasattr(frame, "__len__") else 1
        self.metrics.observe_prediction(
            model=model.name, version=model.version, rows=rows, latency_s=latency_s
        )
        return PredictionResult(
            predictions=predictions,
            request_id=request_id or request_id_from(None),
            model_name=model.name,
            model_version=model.version,
            rows=rows,
            latency_s=latency_s,
        )

    async def _call(self, data: Any, params: dict[str, Any] | None) -> Any:
        # the worker thread cannot be interrupted: on timeout it finishes in the background
        work = asyncio.to_thread(self._predict_blocking, data, params)
        try:
            return await asyncio.wait_for(work, timeout=self.settings.request_timeout_s)
        except TimeoutError:
            raise RequestTimeout(
                f"prediction took longer than {self.settings.request_timeout_s} s"
            ) from None

    def _predict_blocking(self, data: Any, params: dict[str, Any] | None) -> Any:
        try:
            return self.model.pyfunc.predict(data, params=params)
        except MlflowException as error:
            # PyFuncModel.predict enforces the signature and raises MlflowException on mismatch
            raise SchemaMismatch(
                f"input does not match the model signature: {error.message}"
            ) from error
