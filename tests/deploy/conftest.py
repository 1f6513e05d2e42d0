"""What the image tests share: a home with diabetes v1 logged, as a user's training script
leaves it."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet

import greenbutton
from greenbutton.config import Settings
from mlflow_template import seed_mlflow_db


def regressor(estimator: Any) -> greenbutton.Model:
    """A model whose class is pickled by value: a fresh venv cannot import this test module."""

    class Regressor(greenbutton.Model):
        def __init__(self, estimator: Any) -> None:
            self.estimator = estimator

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.estimator.predict(model_input)

    return Regressor(estimator)


@pytest.fixture(scope="module")
def diabetes_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose registry holds ``diabetes`` v1, an ElasticNet (MLflow's URI left as was)."""
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    seed_mlflow_db(settings)
    previous = mlflow.get_tracking_uri()
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    greenbutton.log_model(regressor(ElasticNet(alpha=0.1).fit(X, y)), "diabetes",
                          reference_data=X, settings=settings,
                          pip_requirements=["scikit-learn", "pandas"])
    mlflow.set_tracking_uri(previous)
    return settings
