"""Small factories shared by every test: settings, an MLflow sandbox, logged models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from greenbutton.config import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose embedded defaults all live in this test's temp folder."""
    return Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def mlflow_uri(settings: Settings) -> Iterator[str]:
    """A real MLflow tracking store (SQLite + local artifacts) for this test only."""
    settings.home.mkdir(parents=True, exist_ok=True)
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
