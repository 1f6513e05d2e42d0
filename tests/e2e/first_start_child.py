"""A process of the first-start race (tests/e2e/test_first_start.py): imports everything and
fits its model first, says it is ready, waits for the start signal, then does one thing on
the home named by ``GREENBUTTON_HOME``.

    python first_start_child.py log_model READY_FILE GO_FILE   # log a tiny sklearn model
    python first_start_child.py up READY_FILE GO_FILE          # greenbutton up

``log_model`` prints ``{"version": ..., "run_id": ...}`` on its last line of output.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import greenbutton
import greenbutton.cli
import greenbutton.wiring  # noqa: F401  (imported before the start, as log_model's modules)

MODEL_NAME = "tiny"
WAIT_FOR_START_S = 120.0


class Tiny(greenbutton.Model):
    """LogisticRegression on iris."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.classifier.predict(model_input)


def wait_for_start(ready: Path, go: Path) -> None:
    """Say this process is ready, then wait (bounded) until the test says go."""
    ready.touch()
    deadline = time.monotonic() + WAIT_FOR_START_S
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no start signal ({go}) within {WAIT_FOR_START_S} s")
        time.sleep(0.001)


def main(argv: list[str]) -> int:
    what, ready, go = argv[0], Path(argv[1]), Path(argv[2])
    if what == "up":
        wait_for_start(ready, go)
        return greenbutton.cli.main(["up"])
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = Tiny(LogisticRegression(max_iter=300).fit(X, y))
    wait_for_start(ready, go)
    logged = greenbutton.log_model(model, MODEL_NAME, reference_data=X,
                                   pip_requirements=["scikit-learn", "pandas"])
    print(json.dumps({"version": logged.version, "run_id": logged.run_id}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
