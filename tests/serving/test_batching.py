"""BatchedModel: concurrent requests share one model call; one bad request fails alone."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pandas as pd

from greenbutton.serving.batching import BatchedModel, BatchLimits, batch_limits_of


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
