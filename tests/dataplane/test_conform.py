"""FastConformer: plainly valid frames skip MLflow's enforcement; anything else is left to it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from mlflow.types.schema import ColSpec, Schema

from greenbutton.dataplane.fastparse import ScoringParser
from greenbutton.dataplane.fastpath import FastConformer

SCHEMA = Schema([ColSpec("double", "a"), ColSpec("double", "b")])


def conformer() -> FastConformer:
    built = FastConformer.from_schema(SCHEMA)
    assert built is not None
    return built


def test_float_frame_reordered_and_extra_columns_dropped() -> None:
    frame = pd.DataFrame({"b": [1.0], "x": ["?"], "a": [2.0]})
    conformed = conformer().conform(frame)
    assert conformed is not None and list(conformed.columns) == ["a", "b"]


def test_int32_widened_but_int64_bool_and_missing_left_to_mlflow() -> None:
    assert conformer().conform(pd.DataFrame({"a": [1], "b": [2]}, dtype=np.int32)) is not None
    assert conformer().conform(pd.DataFrame({"a": [1], "b": [2]}, dtype=np.int64)) is None
    assert conformer().conform(pd.DataFrame({"a": [True], "b": [False]})) is None
    assert conformer().conform(pd.DataFrame({"a": [1.0]})) is None


def test_mixed_schemas_cast_per_column_but_optional_ones_have_no_fast_path() -> None:
    mixed = FastConformer.from_schema(Schema([ColSpec("double", "a"), ColSpec("long", "b")]))
    assert mixed is not None
    conformed = mixed.conform(pd.DataFrame({"a": np.array([1], np.int32), "b": [2]}))
    assert conformed is not None and list(conformed.dtypes) == [np.float64, np.int64]
    assert FastConformer.from_schema(Schema([ColSpec("double", "a", required=False)])) is None


def test_fast_parse_equals_mlflow_parse(digits_frame: pd.DataFrame) -> None:
    from mlflow.models import infer_signature

    from greenbutton.dataplane.protocols.mlflow import parse_scoring_json

    schema = infer_signature(digits_frame).inputs
    fast = ScoringParser.from_schema(schema)
    rows = digits_frame[:3].astype("int64")  # JSON integers for double columns
    for body in (
        {"dataframe_split": rows.to_dict(orient="split")},
        {"inputs": {c: rows[c].tolist() for c in rows.columns}},
    ):
        encoded = json.dumps(body).encode()
        quick, _, values = parse_scoring_json(encoded, schema, parser=fast)
        slow, _, _ = parse_scoring_json(encoded, schema)
        assert values is not None  # integers were cast first: the frame holds that array
        np.testing.assert_array_equal(values, quick.to_numpy())
        slow = pd.DataFrame(slow) if isinstance(slow, dict) else slow
        pd.testing.assert_frame_equal(quick.reset_index(drop=True),
                                      slow.astype("float64").reset_index(drop=True))


def test_fast_parse_hands_on_the_rows_array_only_when_it_is_the_frames(
    digits_frame: pd.DataFrame,
) -> None:
    from mlflow.models import infer_signature

    from greenbutton.dataplane.protocols.mlflow import parse_scoring_json

    schema = infer_signature(digits_frame).inputs
    fast = ScoringParser.from_schema(schema)
    rows = digits_frame[:3]
    for body in (
        {"dataframe_split": rows.to_dict(orient="split")},
        {"inputs": {c: rows[c].tolist() for c in rows.columns}},
    ):
        frame, _, values = parse_scoring_json(json.dumps(body).encode(), schema, parser=fast)
        assert values is not None
        np.testing.assert_array_equal(values, frame.to_numpy())
        np.testing.assert_array_equal(values, rows.to_numpy())
    shuffled = rows[list(reversed(rows.columns))]  # conforming reorders the columns
    body = {"dataframe_split": shuffled.to_dict(orient="split")}
    frame, _, values = parse_scoring_json(json.dumps(body).encode(), schema, parser=fast)
    assert values is None
    pd.testing.assert_frame_equal(frame, rows.reset_index(drop=True))
