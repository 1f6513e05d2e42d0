"""MLflow scoring-protocol parsing, without a server."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.types.schema import ColSpec, DataType, Schema

from greenbutton.dataplane.protocols.mlflow import parse_csv, parse_scoring_json
from greenbutton.errors import InvalidInput, SchemaMismatch

SCHEMA = Schema([ColSpec(DataType.double, "a"), ColSpec(DataType.double, "b")])


def test_parse_scoring_json_reads_nan_literals_like_mlflow_clients() -> None:
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, 1.0]]}}'
    frame, params, _ = parse_scoring_json(body, SCHEMA)
    assert isinstance(frame, pd.DataFrame)
    assert frame["a"].isna().all()
    assert params is None


def test_parse_scoring_json_returns_params() -> None:
    body = json.dumps({"inputs": {"a": [1.0], "b": [2.0]}, "params": {"k": 3}}).encode()
    _, params, _ = parse_scoring_json(body, SCHEMA)
    assert params == {"k": 3}


def test_parse_scoring_json_list_body_rejected() -> None:
    with pytest.raises(InvalidInput):
        parse_scoring_json(b"[1, 2]", SCHEMA)


def test_parse_scoring_json_bad_split_raises_schema_mismatch_naming_format() -> None:
    body = json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0]]}}).encode()
    with pytest.raises(SchemaMismatch) as error:
        parse_scoring_json(body, SCHEMA)
    assert error.value.field == "dataframe_split"


def test_parse_csv_reads_signature_dtypes() -> None:
    frame = parse_csv(b"a,b\n1,2\n", SCHEMA)
    assert (frame.dtypes == "float64").all()
