"""BatchedModel: concurrent requests share one model call; one bad request fails alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd

from greenbutton.dataplane.batching import BatchedModel, BatchLimits, batch_limits_of


class Doubler:
    """Doubles column ``x``; refuses negative values; records each call's row count."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        self.gate.wait(timeout=5)
        self.calls.append(len(data))
        if (data["x"] < 0).any():
            raise ValueError("negative")
        return data["x"].to_numpy() * 2


def frame(*values: int) -> pd.DataFrame:
    return pd.DataFrame({"x": list(values)})


async def test_concurrent_requests_predicted_together_and_split_back() -> None:
    inner = Doubler()
    batches: list[tuple[int, int]] = []
    model = BatchedModel(inner, BatchLimits(64, 5.0), lambda r, n: batches.append((r, n)))
    first = asyncio.create_task(model.predict(frame(1)))
    await asyncio.sleep(0.05)  # the first call is in flight; the next ones queue behind it
    rest = [asyncio.create_task(model.predict(frame(i, i))) for i in range(2, 6)]
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [r.tolist() for r in results] == [[2], [4, 4], [6, 6], [8, 8], [10, 10]]
    assert inner.calls == [1, 8]
    assert batches[-1] == (4, 8)
    await model.aclose()


async def test_bad_request_fails_alone() -> None:
    inner = Doubler()
    model = BatchedModel(inner, BatchLimits(64, 5.0))
    first = asyncio.create_task(model.predict(frame(1)))
    await asyncio.sleep(0.05)
    good = asyncio.create_task(model.predict(frame(3)))
    bad = asyncio.create_task(model.predict(frame(-1)))
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(first, good, bad, return_exceptions=True)
    assert results[1].tolist() == [6]  # type: ignore[union-attr]
    assert isinstance(results[2], ValueError)
    await model.aclose()


async def test_different_params_not_combined() -> None:
    inner = Doubler()
    inner.gate.set()
    model = BatchedModel(inner, BatchLimits(64, 1.0))
    await asyncio.gather(model.predict(frame(1), {"a": 1}), model.predict(frame(2), {"a": 2}))
    assert sorted(inner.calls) == [1, 1]
    await model.aclose()


def test_limits_read_from_model_attributes_and_overridden() -> None:
    class Declares:
        max_batch_size = 32
        max_batch_wait_ms = 4.0

    assert batch_limits_of(Declares(), None, None) == BatchLimits(32, 4.0)
    assert batch_limits_of(Declares(), 1, None).is_batching is False
    assert batch_limits_of(None, None, None).is_batching is False


class Annotations:
    """Each row's ``x``, under "x"; records each call's row count and thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, data: pd.DataFrame, predictions: Any) -> dict[str, list[Any]]:
        self.calls.append((len(data), threading.get_ident()))
        return {"x": data["x"].tolist(), "doubled": [int(p) for p in predictions]}


async def test_a_batch_is_annotated_once_in_the_models_thread_and_split_back() -> None:
    inner, annotate = Doubler(), Annotations()
    model = BatchedModel(inner, BatchLimits(64, 5.0), annotate=annotate)
    first = asyncio.create_task(model.predict_annotated(frame(1)))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(model.predict_annotated(frame(i, i + 10), is_annotated=i != 3))
            for i in range(2, 5)]
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [p.tolist() for p, _ in results] == [[2], [4, 24], [6, 26], [8, 28]]
    # one call per batch, off the event loop; a request that did not ask gets them too
    assert [a for _, a in results] == [
        {"x": [1], "doubled": [2]}, {"x": [2, 12], "doubled": [4, 24]},
        {"x": [3, 13], "doubled": [6, 26]}, {"x": [4, 14], "doubled": [8, 28]}]
    assert [rows for rows, _ in annotate.calls] == [1, 6]
    assert threading.get_ident() not in {thread for _, thread in annotate.calls}
    await model.aclose()


async def test_a_batch_nobody_asked_to_annotate_is_not_annotated() -> None:
    inner, annotate = Doubler(), Annotations()
    inner.gate.set()
    model = BatchedModel(inner, BatchLimits(2, 1.0), annotate=annotate)
    results = await asyncio.gather(model.predict(frame(1)), model.predict(frame(2)),
                                   model.predict_annotated(frame(3, 4), is_annotated=False))
    assert [r.tolist() for r in results[:2]] == [[2], [4]]
    assert results[2][0].tolist() == [6, 8] and results[2][1] == {}
    assert annotate.calls == []
    await model.aclose()


async def test_after_a_failed_batch_the_good_requests_are_annotated_alone() -> None:
    inner, annotate = Doubler(), Annotations()
    model = BatchedModel(inner, BatchLimits(64, 5.0), annotate=annotate)
    first = asyncio.create_task(model.predict_annotated(frame(1)))
    await asyncio.sleep(0.05)
    good = asyncio.create_task(model.predict_annotated(frame(3)))
    quiet = asyncio.create_task(model.predict_annotated(frame(5), is_annotated=False))
    bad = asyncio.create_task(model.predict_annotated(frame(-1)))
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(first, good, quiet, bad, return_exceptions=True)
    (good_predictions, good_annotations), (_, quiet_annotations) = results[1:3]  # type: ignore[misc]
    assert good_predictions.tolist() == [6] and good_annotations == {"x": [3], "doubled": [6]}
    assert quiet_annotations == {}
    assert isinstance(results[3], ValueError)
    assert [rows for rows, _ in annotate.calls] == [1, 1]  # the first's, then the good one's
    await model.aclose()


async def test_a_frame_as_large_as_a_batch_is_predicted_and_annotated_alone() -> None:
    inner, annotate = Doubler(), Annotations()
    inner.gate.set()
    model = BatchedModel(inner, BatchLimits(2, 1.0), annotate=annotate)
    predictions, annotations = await model.predict_annotated(frame(1, 2))
    assert predictions.tolist() == [2, 4] and annotations == {"x": [1, 2], "doubled": [2, 4]}
    assert [rows for rows, _ in annotate.calls] == [2]
    await model.aclose()


async def test_values_that_do_not_match_the_batchs_rows_are_none_for_every_row() -> None:
    inner = Doubler()
    model = BatchedModel(inner, BatchLimits(64, 5.0),
                         annotate=lambda data, _: {"short": [0] * (len(data) - 1)})
    first = asyncio.create_task(model.predict_annotated(frame(1), is_annotated=False))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(model.predict_annotated(frame(i, i))) for i in (3, 4)]
    await asyncio.sleep(0.05)
    inner.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [a for _, a in results] == [{}, {"short": [None, None]}, {"short": [None, None]}]
    await model.aclose()
