"""Digits models saved with their reference data, as greenbutton.log_model stores it.

Models are saved with ``mlflow.pyfunc.save_model`` and the ``greenbutton_reference``
artifact (the same layout log_model writes, without a tracking server: logging takes
seconds per model).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.applications import Starlette

import greenbutton
from greenbutton.config import ExplainSettings, Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.context import serving_of
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics
from greenbutton.explain.service import ExplainMetrics, ExplainService

REFERENCE_ROWS = 300


class DigitPipeline(greenbutton.Model):
    """The digits demo's model: StandardScaler + LogisticRegression in a Pipeline."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        """The digit each row shows."""
        return self.pipeline.predict(model_input)


class SelfExplaining(greenbutton.Model):
    """A model with its own explain(); it waits for ``gate`` when a test sets one."""

    explain_output_schema: ClassVar[dict[str, Any] | None] = {
        "type": "array",
        "items": {"type": "object", "properties": {"brightest": {"type": "string"}}},
    }

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.gate: threading.Event | None = None

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        """The digit each row shows."""
        return self.pipeline.predict(model_input)

    def explain(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        """The brightest pixel of each row (after ``gate`` opens, if there is one)."""
        if self.gate is not None:
            self.gate.wait(timeout=10)
        return [{"brightest": str(model_input.columns[np.argmax(row)])}
                for row in model_input.to_numpy()]


@pytest.fixture(scope="session")
def digits_xy() -> tuple[pd.DataFrame, pd.Series]:
    """sklearn's digits: 64 float columns pixel_0..pixel_63 and the digit."""
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    return X.astype("float64"), y


@pytest.fixture(scope="session")
def digits_pipeline(digits_xy: tuple[pd.DataFrame, pd.Series]) -> Any:
    """StandardScaler + LogisticRegression fitted on all digits."""
    X, y = digits_xy
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def save_with_reference(
    python_model: mlflow.pyfunc.PythonModel, folder: Path, X: pd.DataFrame, y: pd.Series
) -> Path:
    """Save ``python_model`` with the digits signature and the reference artifact."""
    reference = folder / "reference.parquet"
    X.head(REFERENCE_ROWS).to_parquet(reference, index=False)
    path = folder / "model"
    mlflow.pyfunc.save_model(
        path,
        python_model=python_model,
        artifacts={"greenbutton_reference": str(reference)},
        signature=infer_signature(X, y.to_numpy()),
        input_example=X.head(2),
        pip_requirements=["scikit-learn", "pandas"],  # skip MLflow's slow inference
    )
    return path


@pytest.fixture(scope="session")
def saved_pipeline(
    tmp_path_factory: pytest.TempPathFactory,
    digits_xy: tuple[pd.DataFrame, pd.Series],
    digits_pipeline: Any,
) -> Path:
    """The digits demo model saved to a local folder."""
    return save_with_reference(
        DigitPipeline(digits_pipeline), tmp_path_factory.mktemp("pipeline"), *digits_xy
    )


@pytest.fixture(scope="session")
def saved_self_explaining(
    tmp_path_factory: pytest.TempPathFactory,
    digits_xy: tuple[pd.DataFrame, pd.Series],
    digits_pipeline: Any,
) -> Path:
    """A model with its own explain() saved to a local folder."""
    return save_with_reference(
        SelfExplaining(digits_pipeline), tmp_path_factory.mktemp("own"), *digits_xy
    )


def served(path: Path, version: str) -> ServedModel:
    """The saved model at ``path``, loaded as a serving process loads it."""
    return ServedModel(pyfunc=mlflow.pyfunc.load_model(str(path)), name="digits", version=version)


def build_app(settings: Settings, model: ServedModel, explain: ExplainSettings) -> Starlette:
    """The serving app around ``model``, with an ExplainService on the same metrics registry."""
    dataplane = DataPlane(settings.serving, Metrics(), model)
    dataplane.is_ready = True
    return create_app(settings, dataplane, explainer=ExplainService(
        explain, ExplainMetrics(dataplane.metrics.registry)))


@pytest.fixture
async def pipeline_client(
    settings: Settings, saved_pipeline: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the app serving the digits demo model as version 3."""
    app = build_app(settings, served(saved_pipeline, "3"), settings.explain)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
    explainer_of(app).close()


AppFactory = Callable[[ServedModel, ExplainSettings], Starlette]


@pytest.fixture
def make_app(settings: Settings) -> AppFactory:
    """Build the serving app around a model with the given explain limits."""
    return lambda model, explain: build_app(settings, model, explain)


@pytest.fixture
def own_model(saved_self_explaining: Path) -> Iterator[ServedModel]:
    """The self-explaining model as version 5; its gate is opened at teardown."""
    model = served(saved_self_explaining, "5")
    yield model
    gate = model.pyfunc.unwrap_python_model().gate
    if gate is not None:
        gate.set()  # never leave a worker thread waiting


def explainer_of(app: Starlette) -> ExplainService:
    """The app's ExplainService."""
    service = serving_of(app).explain
    assert service is not None
    return service
