"""Feedback: ground truth or a reward for a logged prediction, joined by request id.

Stored durably (committed) before the caller gets 2xx. The join scores every row (see
:func:`.performance.row_outcomes`): for classifiers whether each is right (a 40-row request
with 38 right answers counts 38 right, 2 wrong), for regressors each absolute error; a
model's own ``reward(prediction, truth)`` (found by attribute on the unwrapped python model)
turns a truth into a reward too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidInput
from .gauges import MonitoringGauges
from .payload_batches import utc_now
from .payload_store import FeedbackNotFound, LoggedPrediction, PayloadStore
from .performance import row_outcomes

logger = logging.getLogger(__name__)

Reward = Callable[[Any, Any], float]
FLUSH_SLACK_S = 1.0
"""How long another process's flush may take to reach the store, busy as it may be."""


class PendingLog(Protocol):
    """The payload log's buffer, flushed when feedback names a record not yet written."""

    def pending(self, request_id: str) -> bool: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True)
class Feedback:
    """What the caller sent: a truth (one value, or one per row) and/or a reward."""

    request_id: str
    truth: Any = None
    reward: float | None = None
    replace: bool = False

    def __post_init__(self) -> None:
        if self.truth is None and self.reward is None:
            raise InvalidInput("feedback needs a truth or a reward", field="truth")


class FeedbackService:
    """Joins feedback with the payload log, stores it, and republishes live quality."""

    def __init__(self, store: PayloadStore, log: PendingLog, gauges: MonitoringGauges,
                 reward: Reward | None = None, *, flush_interval_s: float = 1.0) -> None:
        self.store, self.log, self.gauges, self.reward = store, log, gauges, reward
        self.flush_interval_s = flush_interval_s

    async def record(self, feedback: Feedback) -> dict[str, Any]:
        """Store ``feedback``; FeedbackNotFound (404) / FeedbackExists (409) as appropriate."""
        logged = await self._find(feedback.request_id)
        if logged is None:
            raise FeedbackNotFound(f"no logged prediction has request id "
                                   f"{feedback.request_id!r}")
        values = self._row(feedback, logged)
        await asyncio.to_thread(self.store.save_feedback, values, replace=feedback.replace)
        kind = "truth" if feedback.truth is not None else "reward"
        self.gauges.feedback.labels(logged.model_name, logged.model_version or "", kind).inc()
        self.gauges.publish_feedback(await asyncio.to_thread(self.store.summaries))
        return {"request_id": feedback.request_id, "model": {
            "name": logged.model_name, "version": logged.model_version},
            "is_correct": values["is_correct"], "abs_error": values["abs_error"],
            "accuracy": _share(values["correct_rows"], values["rows"]),
            "reward": values["reward"]}

    async def _find(self, request_id: str) -> LoggedPrediction | None:
        """The logged prediction; one still buffered here is flushed first, and one buffered by
        another process of the deployment (a replica, a worker) is waited for: every buffer is
        flushed within ``flush_interval_s``, and the flush gets ``FLUSH_SLACK_S`` more (or one
        more interval, if longer) to be written."""
        logged = await asyncio.to_thread(self.store.find_prediction, request_id)
        if logged is None and self.log.pending(request_id):
            await self.log.flush()
            logged = await asyncio.to_thread(self.store.find_prediction, request_id)
        deadline = (time.monotonic() + self.flush_interval_s
                    + max(self.flush_interval_s, FLUSH_SLACK_S))
        while logged is None and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, self.flush_interval_s / 4))
            logged = await asyncio.to_thread(self.store.find_prediction, request_id)
        return logged

    def _row(self, feedback: Feedback, logged: LoggedPrediction) -> dict[str, Any]:
        predictions = [_scalar(p) for p in logged.predictions]
        truths = _as_rows(feedback.truth, len(predictions))
        values: dict[str, Any] = {"is_correct": None, "abs_error": None, "rows": None,
                                  "correct_rows": None, "outcomes": None}
        reward = feedback.reward
        if truths is not None and truths:
            measure, outcomes = row_outcomes(predictions, truths)
            values.update(rows=len(outcomes), outcomes=outcomes)
            if measure == "error":
                values["abs_error"] = sum(outcomes) / len(outcomes)
            else:
                values.update(is_correct=all(o == 1.0 for o in outcomes),
                              correct_rows=int(sum(outcomes)))
            if reward is None and self.reward is not None:
                reward = self._model_reward(list(zip(predictions, truths, strict=True)))
        return {"request_id": feedback.request_id, "model_name": logged.model_name,
                "model_version": logged.model_version, "truth": feedback.truth,
                "reward": reward, **values, "received_at": utc_now()}

    def _model_reward(self, pairs: list[tuple[Any, Any]]) -> float | None:
        assert self.reward is not None
        try:
            return sum(float(self.reward(p, t)) for p, t in pairs) / len(pairs)
        except Exception:  # the user's code: a failing reward leaves the feedback stored
            logger.exception("the model's reward() failed")
            return None


def _as_rows(truth: Any, rows: int) -> list[Any] | None:
    if truth is None:
        return None
    values = truth if isinstance(truth, list) else [truth]
    values = [_scalar(v) for v in values]
    if len(values) != rows:
        raise InvalidInput(f"truth has {len(values)} values for a prediction of {rows} rows",
                           field="truth")
    return values


def _scalar(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def _share(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else part / whole
