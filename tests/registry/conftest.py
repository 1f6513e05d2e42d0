"""One MLflow sandbox per test module (creating its database and logging a model take seconds);
each test registers fresh model names in it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.models.model import ModelInfo
from mlflow.pyfunc.model import PythonModel

from greenbutton.registry import Registry
from greenbutton.store import LifecycleStore, MemoryStore
from mlflow_template import seeded_mlflow_uri


class Echo(PythonModel):
    """The smallest pyfunc model: returns its input."""

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[str]:
        """Echo the input back."""
        return model_input


@pytest.fixture(scope="module")
def logged_model(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MlflowClient, ModelInfo]]:
    """A real MLflow (SQLite + local artifacts) holding one logged pyfunc model."""
    home: Path = tmp_path_factory.mktemp("mlflow")
    uri = seeded_mlflow_uri(home)
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("registry-tests", (home / "artifacts").as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=Echo(), registered_model_name="logged"
            )
        yield client, info
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


@pytest.fixture
def client(logged_model: tuple[MlflowClient, ModelInfo]) -> MlflowClient:
    """The sandbox's MLflow client."""
    return logged_model[0]


@pytest.fixture
def store() -> LifecycleStore:
    """A fresh lifecycle store for this test."""
    return MemoryStore()


@pytest.fixture
def registry(client: MlflowClient, store: LifecycleStore) -> Registry:
    """The registry over the sandbox and this test's store."""
    return Registry(client, store)


@pytest.fixture
def register(logged_model: tuple[MlflowClient, ModelInfo]) -> Callable[..., str]:
    """Register a new model with ``versions`` versions of the logged model; returns its name."""
    client, info = logged_model

    def register(versions: int = 1, *, name: str | None = None) -> str:
        name = name or f"model-{uuid.uuid4().hex[:12]}"
        client.create_registered_model(name)
        for _ in range(versions):
            client.create_model_version(
                name, source=info.model_uri, run_id=info.run_id, model_id=info.model_id
            )
        return name

    return register
