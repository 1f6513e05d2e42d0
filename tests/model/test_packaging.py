"""greenbutton.log_model against a real MLflow (SQLite backend, local artifacts)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings
from greenbutton.packaging import PROFILE_ARTIFACT, REFERENCE_ARTIFACT, TAG_DIGEST


def _digits() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    return X, y


def _digits_model() -> greenbutton.Model:
    # Defined inside a function so cloudpickle stores it by value, as for a notebook class.
    class Digits(greenbutton.Model):
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

    X, y = _digits()
    return Digits(LogisticRegression(max_iter=300).fit(X, y))


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One MLflow store for the module: logging a model takes seconds."""
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def logged(module_settings: Settings) -> greenbutton.LoggedModel:
    X, _ = _digits()
    return greenbutton.log_model(_digits_model(), "digits", reference_data=X,
                                 settings=module_settings, description="first cut",
                                 pip_requirements=["scikit-learn", "pandas"])


@pytest.fixture
def mlflow_client(module_settings: Settings) -> MlflowClient:
    uri = module_settings.mlflow.tracking_uri
    return MlflowClient(uri, uri)


def test_log_model_registers_a_version(logged: greenbutton.LoggedModel,
                                       mlflow_client: MlflowClient) -> None:
    version = mlflow_client.get_model_version("digits", str(logged.version))
    assert logged.version == 1
    assert version.run_id == logged.run_id
    assert version.tags[TAG_DIGEST] == logged.data_digest
    assert version.description == "first cut"


def test_log_model_infers_signature_and_example(logged: greenbutton.LoggedModel) -> None:
    info = mlflow.models.get_model_info(logged.model_uri)
    assert info.signature is not None
    assert info.signature.inputs.input_names() == [f"pixel_{i}" for i in range(64)]
    assert info.signature.outputs is not None
    assert info.saved_input_example_info is not None
    assert greenbutton.check(logged.model_uri).is_ok


def test_log_model_keeps_reference_data_and_profile(logged: greenbutton.LoggedModel,
                                                    tmp_path: Path) -> None:
    local = Path(mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=str(tmp_path)))
    mlmodel = (local / "MLmodel").read_text()
    assert REFERENCE_ARTIFACT in mlmodel and PROFILE_ARTIFACT in mlmodel
    profile = json.loads(next(local.rglob("profile.json")).read_text())
    assert profile["rows"] == 1797
    assert profile["digest"] == logged.data_digest
    assert profile["columns"]["pixel_10"]["kind"] == "numeric"
    reference = pd.read_parquet(next(local.rglob("reference.parquet")))
    assert reference.shape == (1797, 64)


def test_log_model_records_dataset_input(logged: greenbutton.LoggedModel,
                                         mlflow_client: MlflowClient) -> None:
    run = mlflow_client.get_run(logged.run_id)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["digits-reference"]


def test_log_model_twice_creates_next_version(logged: greenbutton.LoggedModel,
                                               module_settings: Settings) -> None:
    X, _ = _digits()
    second = greenbutton.log_model(_digits_model(), "digits", reference_data=X.head(500),
                                   settings=module_settings, pip_requirements=["scikit-learn"])
    assert second.version == logged.version + 1
    assert second.data_digest != logged.data_digest


def test_raw_mlflow_loads_model_without_greenbutton(logged: greenbutton.LoggedModel,
                                                    module_settings: Settings) -> None:
    mlflow_uri = module_settings.mlflow.tracking_uri
    script = (
        "import sys, mlflow\n"
        "from sklearn.datasets import load_digits\n"
        f"mlflow.set_tracking_uri({mlflow_uri!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/digits/{logged.version}')\n"
        "X, y = load_digits(return_X_y=True, as_frame=True)\n"
        "X.columns = [f'pixel_{i}' for i in range(64)]\n"
        "print(int((model.predict(X.head(200)) == y.head(200)).sum()))\n"
        "assert not [m for m in sys.modules if m.startswith('greenbutton')], 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) >= 190
