"""log_model fits the monitors and they travel with the model version into serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

import greenbutton
from greenbutton.config import Settings
from greenbutton.dataplane.loading import load_served_model
from greenbutton.monitoring.monitors import load_monitors
from greenbutton.monitoring.runtime import model_artifacts


def _model(train: pd.DataFrame, labels: np.ndarray) -> greenbutton.Model:
    from sklearn.linear_model import LogisticRegression

    class Digits(greenbutton.Model):  # local class: pickled by value, like a notebook's
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

    return Digits(LogisticRegression(max_iter=300).fit(train, labels))


@pytest.fixture
def isolated(settings: Settings) -> Iterator[Settings]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield settings
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_logged_version_carries_loadable_monitors(isolated: Settings, digits_split: Any,
                                                  tmp_path: Path) -> None:
    train, labels = digits_split[0], digits_split[1]
    logged = greenbutton.log_model(_model(train, labels), "digits", reference_data=train,
                                   settings=isolated)
    served = load_served_model(logged.model_uri, isolated.mlflow, tmp_path)
    monitors = load_monitors(Path(model_artifacts(served)["greenbutton_monitors"]))
    white = pd.DataFrame([np.full(64, 16.0)], columns=train.columns)
    assert monitors.outliers is not None
    assert monitors.outlier_scores(white)[0] > monitors.outliers.threshold
    assert set(monitors.drift) == {"features", "quality", "predictions", "outlier_scores", "mmd"}


def test_held_out_rows_give_label_performance_and_confidence_monitors(
        isolated: Settings, digits_split: Any, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    class Probable(greenbutton.Model):
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

        def predict_proba(self, context: Any, model_input: pd.DataFrame) -> Any:
            return self.clf.predict_proba(model_input)

    train, labels, test, truths = digits_split
    model = Probable(LogisticRegression(max_iter=300).fit(train, labels))
    logged = greenbutton.log_model(model, "digits", reference_data=train, settings=isolated,
                                   held_out=(test, truths), reference_targets=labels)
    served = load_served_model(logged.model_uri, isolated.mlflow, tmp_path)
    monitors = load_monitors(Path(model_artifacts(served)["greenbutton_monitors"]))
    assert monitors.labels is not None and monitors.confidence is not None
    assert monitors.labels.counts is not None  # the training and held-out truths, together
    assert sum(monitors.labels.counts.values()) == len(labels) + len(truths)
    assert monitors.performance is not None and monitors.performance.reference_value > 0.9


def test_unknown_categorical_column_refused(isolated: Settings, digits_split: Any) -> None:
    from greenbutton.errors import InvalidInput

    train, labels = digits_split[0], digits_split[1]
    with pytest.raises(InvalidInput):
        greenbutton.log_model(_model(train, labels), "digits", reference_data=train,
                              settings=isolated, categorical=["no_such_column"])


def test_reference_targets_of_another_length_refused_before_anything_is_logged(
        isolated: Settings, digits_split: Any) -> None:
    from greenbutton.errors import InvalidInput

    train, labels = digits_split[0], digits_split[1]
    with pytest.raises(InvalidInput, match="1346 targets for 1347") as refused:
        greenbutton.log_model(_model(train, labels), "digits", reference_data=train,
                              settings=isolated, reference_targets=labels[:-1])
    assert refused.value.field == "reference_targets"
    where = isolated.mlflow
    client = mlflow.MlflowClient(where.tracking_uri, registry_uri=where.registry_uri)
    assert client.search_registered_models() == []


def test_reference_targets_follow_their_rows_when_the_reference_is_sampled() -> None:
    from greenbutton import packaging, reference

    rows = reference.MAX_REFERENCE_ROWS + 500
    frame = pd.DataFrame({"row": np.arange(rows)})
    kept, targets = packaging._reference_rows(frame, pd.Series(np.arange(rows) * 10))
    assert len(kept) == reference.MAX_REFERENCE_ROWS
    assert targets.tolist() == (kept["row"] * 10).tolist()
