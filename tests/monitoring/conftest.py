"""Monitoring fixtures: digits monitors fitted once, a served model carrying them, the app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel, load_served_model
from greenbutton.dataplane.metrics import Metrics
from greenbutton.monitoring.monitors import MONITORS_ARTIFACT, HeldOut, Monitors, fit, save
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.runtime import MonitoringRuntime


class RewardedDigits(mlflow.pyfunc.PythonModel):
    """Digits classifier with a reward: 1 for a right answer, -1 for a wrong one; and its
    class probabilities."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.classifier.predict(model_input)

    def predict_proba(self, context: Any, model_input: pd.DataFrame) -> Any:
        return self.classifier.predict_proba(model_input)

    def reward(self, prediction: Any, truth: Any) -> float:
        return 1.0 if str(prediction) == str(truth) else -1.0


@pytest.fixture(scope="session")
def digits_split() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """A random 75 / 25 split of sklearn's digits (the benchmark's split)."""
    data = load_digits()
    frame = pd.DataFrame(data.data, columns=[f"pixel_{i}" for i in range(64)])
    train, test, y_train, y_test = train_test_split(frame, data.target, test_size=0.25,
                                                    random_state=0)
    return train.reset_index(drop=True), y_train, test.reset_index(drop=True), y_test


@pytest.fixture(scope="session")
def classifier(digits_split: Any) -> LogisticRegression:
    """A digits classifier trained on the training rows."""
    return LogisticRegression(max_iter=1000).fit(digits_split[0], digits_split[1])


@pytest.fixture(scope="session")
def digits_monitors(digits_split: Any, classifier: LogisticRegression) -> Monitors:
    """Monitors fitted on the training rows (not saved)."""
    return fit(digits_split[0], classifier.predict(digits_split[0]))


@pytest.fixture(scope="session")
def held_out_monitors(digits_split: Any, classifier: LogisticRegression) -> Monitors:
    """Monitors fitted on the training rows and the first 200 test rows as held-out rows."""
    train, _, test, y_test = digits_split
    held = test[:200]
    return fit(train, classifier.predict(train), held_out=HeldOut(
        y_test[:200], classifier.predict(held), classifier.predict_proba(held)))


@pytest.fixture(scope="session")
def monitored_model(tmp_path_factory: pytest.TempPathFactory, digits_split: Any,
                    classifier: LogisticRegression, digits_monitors: Monitors) -> ServedModel:
    """A digits pyfunc model saved with its monitors as an artifact, loaded as serving does."""
    return served(tmp_path_factory.mktemp("monitored"), digits_split[0], classifier,
                  digits_monitors)


@pytest.fixture(scope="session")
def held_out_model(tmp_path_factory: pytest.TempPathFactory, digits_split: Any,
                   classifier: LogisticRegression, held_out_monitors: Monitors) -> ServedModel:
    """The digits model served with monitors fitted with held-out rows."""
    return served(tmp_path_factory.mktemp("held-out"), digits_split[0], classifier,
                  held_out_monitors)


def served(folder: Path, train: pd.DataFrame, classifier: LogisticRegression,
           monitors: Monitors) -> ServedModel:
    """``classifier`` saved as a pyfunc model with ``monitors``, loaded as serving does."""
    artifacts = {MONITORS_ARTIFACT: str(folder / "fit")}
    save(monitors, folder / "fit")
    signature = infer_signature(train, np.zeros(len(train), dtype=np.int64))
    mlflow.pyfunc.save_model(folder / "model", python_model=RewardedDigits(classifier),
                             artifacts=artifacts, signature=signature,
                             input_example=train[:2])
    settings = Settings(home=folder / "gb", _env_file=None)  # type: ignore[call-arg]
    (folder / "dst").mkdir()
    return load_served_model(str(folder / "model"), settings.mlflow, folder / "dst")


@pytest.fixture
def payload_store(settings: Settings) -> PayloadStore:
    """The payload log and feedback tables in this test's SQLite file."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = PayloadStore(settings.monitoring.payload_store_uri)
    yield store  # type: ignore[misc]
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A payload store URI on each backend (the shared PostgreSQL: isolate by request ids)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return str(request.getfixturevalue("postgres_uri"))


@pytest.fixture
def any_store(any_store_uri: str) -> Iterator[PayloadStore]:
    """The payload store on each backend (see ``any_store_uri``)."""
    store = PayloadStore(any_store_uri)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def own_store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A payload store of its own on each backend, for tests that touch every row of a table
    (the shared PostgreSQL gets a fresh database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitoring.db'}"
        return
    import psycopg

    server = request.getfixturevalue("postgres_uri")
    base, _, _ = server.rpartition("/")
    name = f"gb_payload_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def own_store(own_store_uri: str) -> Iterator[PayloadStore]:
    """The payload store in a database of its own, on each backend."""
    store = PayloadStore(own_store_uri)
    yield store
    store.close()


@pytest.fixture
async def monitored_app(settings: Settings, monitored_model: ServedModel,
                        payload_store: PayloadStore) -> AsyncIterator[tuple[Any, ...]]:
    """The serving app with monitoring plugged in, warmed up; yields (client, runtime, plane)."""
    async for app in serve(settings, monitored_model, payload_store):
        yield app


@pytest.fixture
async def held_out_app(settings: Settings, held_out_model: ServedModel,
                       payload_store: PayloadStore) -> AsyncIterator[tuple[Any, ...]]:
    """As ``monitored_app``, with monitors fitted with held-out rows."""
    async for app in serve(settings, held_out_model, payload_store):
        yield app


async def serve(settings: Settings, model: ServedModel, payload_store: PayloadStore
                ) -> AsyncIterator[tuple[Any, ...]]:
    """(client, runtime, plane) of the serving app with monitoring, closed at the end."""
    runtime = MonitoringRuntime(settings.monitoring, payload_store)
    plane = DataPlane(settings.serving, Metrics(), model)
    hooks = runtime.hooks(model, plane.metrics)
    plane.add_hooks(hooks.annotators, hooks.sinks)
    await plane.warm_up()
    app = create_app(settings, plane, extra_routes=runtime.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client, runtime, plane
    await plane.aclose()


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    """A scratch folder."""
    return tmp_path
