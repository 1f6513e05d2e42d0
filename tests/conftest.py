"""Small factories shared by every test: settings, an MLflow sandbox, logged models."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from greenbutton.config import Settings
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel, load_served_model
from greenbutton.dataplane.metrics import Metrics
from mlflow_template import seed_mlflow_db
from postgres_server import postgres_uri  # noqa: F401  (session fixture: real PostgreSQL)


@pytest.fixture(scope="session", autouse=True)
def one_native_thread() -> Iterator[None]:
    """The suite's own fits and scores on one OpenBLAS/OpenMP thread. The servers it starts
    share the cores, and a pool of two threads busy-waits against them: a LogisticRegression
    fit on digits took 1.5-8 s on 2 busy cores and 0.12 s on one thread. Serving processes
    size their own pools (``dataplane/threads.py``), so this changes nothing under test."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose embedded defaults all live in this test's temp folder."""
    return Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def mlflow_uri(settings: Settings) -> Iterator[str]:
    """A real MLflow tracking store (SQLite + local artifacts) for this test only."""
    seed_mlflow_db(settings)
    uri = settings.mlflow.tracking_uri
    assert uri is not None
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # keep artifacts in the temp folder, not ./mlruns of the current directory
    experiment = MlflowClient(uri).create_experiment(
        "tests", artifact_location=f"{settings.mlflow.artifact_root}/tests")
    mlflow.set_experiment(experiment_id=experiment)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def mlflow_client(mlflow_uri: str) -> MlflowClient:
    """An MlflowClient on the test's tracking store."""
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


# --- a real digits model, logged once per session, and data planes around it ---


class DigitsClassifier(mlflow.pyfunc.PythonModel):
    """LogisticRegression on sklearn's digits, as a pyfunc model."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """The digit each row shows."""
        return self.classifier.predict(model_input)  # type: ignore[no-any-return]


DIGITS_URI = "models:/digits/1"
"""Where the session's digits model is registered."""


@pytest.fixture(scope="session")
def digits_frame() -> pd.DataFrame:
    """sklearn's digits as 64 float columns pixel_0..pixel_63."""
    data = load_digits()
    return pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(64)]).astype("float64")


@pytest.fixture(scope="session")
def digits_store(tmp_path_factory: pytest.TempPathFactory, digits_frame: pd.DataFrame) -> Settings:
    """Settings of a session-wide MLflow store holding version 1 of the model ``digits``."""
    home = tmp_path_factory.mktemp("digits") / "gb"
    home.mkdir()
    settings = Settings(home=home, _env_file=None)  # type: ignore[call-arg]
    target = load_digits().target
    classifier = LogisticRegression(max_iter=500).fit(digits_frame, target)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.registry_uri)
    module = sys.modules[DigitsClassifier.__module__]
    cloudpickle.register_pickle_by_value(module)  # so a separate process can unpickle it
    try:
        experiment = mlflow.create_experiment("digits", settings.mlflow.artifact_root)
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=DigitsClassifier(classifier),
                signature=infer_signature(digits_frame, target),
                input_example=digits_frame[:5],
                registered_model_name="digits",
            )
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return settings


@pytest.fixture(scope="session")
def served_digits(digits_store: Settings, tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    """The digits model loaded once for every test that serves it."""
    dst = tmp_path_factory.mktemp("served")
    return load_served_model(DIGITS_URI, digits_store.mlflow, Path(dst))


@pytest.fixture
async def dataplane(settings: Settings, served_digits: ServedModel) -> DataPlane:
    """A warmed-up data plane over the digits model, with fresh metrics."""
    plane = DataPlane(settings.serving, Metrics(), served_digits)
    await plane.warm_up()
    return plane


@pytest.fixture
def save_local_model(
    tmp_path: Path, settings: Settings, digits_frame: pd.DataFrame
) -> Callable[[mlflow.pyfunc.PythonModel], ServedModel]:
    """Save a pyfunc model with the digits signature to a local folder and load it."""
    seed_mlflow_db(settings)  # loading opens the home's MLflow store

    def save(python_model: mlflow.pyfunc.PythonModel) -> ServedModel:
        path = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        signature = infer_signature(digits_frame, np.zeros(len(digits_frame), dtype=np.int64))
        # requirements named, not inferred: MLflow infers them in a child process that imports
        # the model (1.7 s a call here), and no test of this fixture is about requirements
        mlflow.pyfunc.save_model(
            path, python_model=python_model, signature=signature, input_example=digits_frame[:2],
            pip_requirements=["mlflow", "numpy", "pandas"]
        )
        dst = tmp_path / f"{path.name}-loaded"
        dst.mkdir()
        return load_served_model(str(path), settings.mlflow, dst)

    return save
