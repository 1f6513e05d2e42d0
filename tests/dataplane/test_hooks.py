"""The monitoring seam: annotators' values reach the result, sinks get a record per request."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd

from greenbutton.config import Settings
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.hooks import PredictionRecord
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics


class RowCount:
    name = "row"

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        return list(range(len(frame)))


class Broken:
    name = "broken"

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        raise RuntimeError("bug in a monitor")


class Short:
    name = "short"

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        return [1] * (len(frame) - 1)


class Recording:
    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.is_closed = False

    def submit(self, record: PredictionRecord) -> None:
        self.records.append(record)

    async def aclose(self) -> None:
        self.is_closed = True


async def test_annotations_and_record_reach_hooks(
    settings: Settings, served_digits: ServedModel, digits_frame: pd.DataFrame
) -> None:
    sink = Recording()
    plane = DataPlane(settings.serving, Metrics(), served_digits,
                      annotators=[RowCount(), Broken(), Short()], sinks=[sink])
    result = await plane.predict(digits_frame[:3], request_id="r1", endpoint="/predict")
    assert result.annotations == {"row": [0, 1, 2], "broken": [None, None, None],
                                  "short": [None, None, None]}
    record = sink.records[-1]
    assert (record.request_id, record.model_version, len(record.inputs)) == ("r1", "1", 3)
    assert record.received_at.tzinfo is not None
    await plane.aclose()
    assert sink.is_closed


async def test_the_requests_array_reaches_annotators_that_take_it_and_the_sinks(
    settings: Settings, served_digits: ServedModel, digits_frame: pd.DataFrame
) -> None:
    class FromValues(RowCount):
        name = "from_values"
        seen: list[Any] = []

        def annotate_with_values(self, frame: pd.DataFrame, values: Any,
                                 predictions: Any) -> list[Any]:
            self.seen.append(values)
            return [float(v) for v in values[:, 0]]

    sink = Recording()
    plane = DataPlane(settings.serving, Metrics(), served_digits,
                      annotators=[FromValues(), RowCount()], sinks=[sink])
    frame = digits_frame[:2]
    matrix = frame.to_numpy()
    result = await plane.predict(frame, request_id="r4", values=matrix)
    assert FromValues.seen == [matrix] and sink.records[-1].values is matrix
    assert result.annotations == {"from_values": matrix[:, 0].tolist(), "row": [0, 1]}
    without = await plane.predict(frame, request_id="r5")  # no array: annotate() as before
    assert without.annotations["from_values"] == [0, 1] and sink.records[-1].values is None
    await plane.aclose()


async def test_callers_not_rendering_annotations_skip_them(
    settings: Settings, served_digits: ServedModel, digits_frame: pd.DataFrame
) -> None:
    class Counting(RowCount):
        calls = 0

        def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
            Counting.calls += 1
            return super().annotate(frame, predictions)

    sink = Recording()
    plane = DataPlane(settings.serving, Metrics(), served_digits, annotators=[Counting()],
                      sinks=[sink])
    result = await plane.predict(digits_frame[:2], request_id="r2", endpoint="/invocations",
                                 with_annotations=False)
    assert (result.annotations, sink.records[-1].annotations, Counting.calls) == ({}, {}, 0)
    await plane.predict(digits_frame[:2], request_id="r3")
    assert Counting.calls == 1
    await plane.aclose()


async def test_a_batching_model_annotates_each_batch_once_and_hands_each_request_its_rows(
    settings: Settings, served_digits: ServedModel, digits_frame: pd.DataFrame
) -> None:
    class Counting(RowCount):
        calls: list[int] = []

        def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
            self.calls.append(len(frame))
            return [int(p) for p in predictions]

    sink = Recording()
    batching = settings.serving.model_copy(update={"max_batch_size": 16,
                                                   "max_batch_wait_ms": 50.0})
    plane = DataPlane(batching, Metrics(), served_digits, annotators=[Counting()],
                      sinks=[sink])
    assert plane.batcher is not None
    frames = [digits_frame[i:i + 2] for i in range(0, 12, 2)]
    results = await asyncio.gather(*[plane.predict(f, request_id=f"b{i}")
                                     for i, f in enumerate(frames)])
    for result in results:
        assert result.annotations == {"row": [int(p) for p in result.predictions]}
    assert sum(Counting.calls) == 12 and len(Counting.calls) < len(frames)  # batched
    assert {r.request_id: r.annotations for r in sink.records} == {
        r.request_id: r.annotations for r in results}
    await plane.aclose()
