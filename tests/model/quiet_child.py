"""A process that logs a tiny model with greenbutton.log_model, for tests/model/test_quiet.py.

    python quiet_child.py HOME [verbose]

The model warns from its ``predict`` (the user's own warning, which must be shown) and has
MLflow's logger warn too (an MLflow warning during the call, which must be shown). After
the call, MLflow logs one warning of its own (which must be shown again) and the process
prints ``version=<n> progress_bar=<the variable MLflow reads, or unset>``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings

USER_WARNING = "the user's own warning from predict"
AFTER_CALL = "an MLflow warning after the call"
DURING_CALL = "an MLflow warning during the call"


class Tiny(greenbutton.Model):
    """LogisticRegression on iris, warning on every call."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        warnings.warn(USER_WARNING, UserWarning, stacklevel=1)
        logging.getLogger("mlflow.pyfunc").warning(DURING_CALL)
        return self.classifier.predict(model_input)


def main(argv: list[str]) -> int:
    home, verbose = Path(argv[0]), argv[1:] == ["verbose"]
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = Tiny(LogisticRegression(max_iter=300).fit(X, y))
    settings = Settings(home=home, _env_file=None)  # type: ignore[call-arg]
    # the default call is what users write; verbose=True only when asked
    options: dict[str, Any] = {"verbose": True} if verbose else {}
    logged = greenbutton.log_model(model, "tiny", reference_data=X, settings=settings, **options)
    logging.getLogger("mlflow.tracking").warning(AFTER_CALL)
    variable = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "unset")
    print(f"version={logged.version} progress_bar={variable}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
