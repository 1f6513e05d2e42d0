"""Stacking many answered predictions into one, and annotating them in one call per group."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from greenbutton.dataplane.hooks import PredictionRecord, utc_now
from greenbutton.monitoring.stacking import (
    Answered,
    annotate_records,
    stack_inputs,
    stack_predictions,
)

INDEX = pd.Index(["a", "b"])


def record(request_id: str, frame: pd.DataFrame, annotations: dict[str, Any] | None = None,
           ) -> Answered:
    return Answered.of(PredictionRecord(
        request_id=request_id, model_name="m", model_version="1", endpoint="/invocations",
        inputs=frame, predictions=np.arange(len(frame)), annotations=annotations or {},
        latency_s=0.001, received_at=utc_now()))


class Doubler:
    """Annotates each row with twice its first column; counts calls and rows."""

    name = "double"

    def __init__(self, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on

    def annotate(self, frame: pd.DataFrame, predictions: Any) -> list[Any]:
        self.calls.append(len(frame))
        values = frame.iloc[:, 0].to_numpy()
        if self.fail_on is not None and (values == self.fail_on).any():
            raise RuntimeError("this monitor has a bug")
        return [2 * v for v in values.tolist()]


def test_arrays_over_the_same_columns_stack_like_concat() -> None:
    frames = [pd.DataFrame(np.full((n, 2), float(n)), columns=INDEX) for n in (1, 3)]
    frames.append(pd.DataFrame(np.full((2, 2), 2.0), columns=["a", "b"]))  # equal, not shared
    stacked = stack_inputs([record(str(i), f) for i, f in enumerate(frames)])
    pd.testing.assert_frame_equal(stacked, pd.concat(frames, ignore_index=True))


def test_mixed_dtypes_go_through_concat() -> None:
    frames = [pd.DataFrame({"a": [1], "b": ["x"]}), pd.DataFrame({"a": [2], "b": ["y"]})]
    stacked = stack_inputs([record(str(i), f) for i, f in enumerate(frames)])
    assert stacked.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize(("outputs", "expected"), [
    ([np.array([1]), np.array([2, 3])], [1, 2, 3]),
    ([[1], [2, 3]], [1, 2, 3]),
    ([pd.Series([1]), pd.Series([2, 3])], [1, 2, 3]),
])
def test_predictions_stack_in_order(outputs: list[Any], expected: list[int]) -> None:
    assert list(stack_predictions(outputs)) == expected


def test_entries_keep_one_numeric_block_as_an_array() -> None:
    numeric = record("n", pd.DataFrame([[1.0, 2.0]], columns=INDEX))
    mixed = record("m", pd.DataFrame({"a": [1], "b": [2.0]}))
    text = record("t", pd.DataFrame({"a": ["x"]}))
    assert numeric.frame is None and numeric.values is not None
    pd.testing.assert_frame_equal(numeric.inputs, pd.DataFrame([[1.0, 2.0]], columns=INDEX))
    assert mixed.values is None and list(mixed.inputs.dtypes) == [np.int64, np.float64]
    assert text.values is None and text.rows == 1


def test_entries_keep_the_requests_own_array_when_it_fits_the_frame() -> None:
    frame = pd.DataFrame([[1.0, 2.0]], columns=INDEX)
    matrix = np.array([[1.0, 2.0]])

    def entry(values: np.ndarray) -> Answered:
        return Answered.of(PredictionRecord(
            request_id="r", model_name="m", model_version="1", endpoint="/predict",
            inputs=frame, predictions=np.arange(1), annotations={}, latency_s=0.001,
            received_at=utc_now(), values=values))

    assert entry(matrix).values is matrix  # not converted from the frame again
    wrong = entry(np.array([[1.0, 2.0, 3.0]]))  # not the frame's shape: the frame decides
    assert wrong.values is not None and wrong.values.tolist() == [[1.0, 2.0]]


def test_missing_annotations_computed_once_per_column_set() -> None:
    same = [record(f"r{i}", pd.DataFrame([[float(i), 0.0]], columns=INDEX)) for i in range(4)]
    other = record("o", pd.DataFrame({"z": [10.0, 20.0]}))
    done = record("d", pd.DataFrame([[7.0, 0.0]], columns=INDEX), {"double": ["kept"]})
    annotator = Doubler()
    annotations = annotate_records([annotator], [*same, other, done])
    assert sorted(annotator.calls) == [2, 4]  # one call per column set, none for "d"
    assert [a["double"] for a in annotations] == [[0.0], [2.0], [4.0], [6.0], [20.0, 40.0],
                                                   ["kept"]]
    assert annotations[-1] is done.annotations  # complete already: not copied
    assert all(r.annotations == {} for r in [*same, other])  # the entries' own: untouched


def test_a_failing_batch_is_annotated_one_by_one() -> None:
    records = [record(f"r{i}", pd.DataFrame([[float(i), 0.0]], columns=INDEX)) for i in range(3)]
    annotator = Doubler(fail_on=1.0)
    annotations = annotate_records([annotator], records)
    assert [a["double"] for a in annotations] == [[0.0], [None], [4.0]]
    assert annotator.calls == [3, 1, 1, 1]
