"""The green-button demo: a digit classifier from one Python class to a live REST endpoint.

    make demo                       # or: .venv/bin/python examples/digits_demo.py
    make demo DEMO_ARGS=--exit      # stop everything at the end (used by the tests)

It starts the control plane (`greenbutton up`) unless one already answers, trains a classifier
on scikit-learn's bundled 8x8 digits, logs it with greenbutton.log_model, promotes it to
Production, waits for the controller to deploy it, and calls the endpoint.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import greenbutton
from greenbutton.cli.governance import local_token
from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.launcher import ensure_platform, stop_platform, wait_until_serving


class DigitClassifier(greenbutton.Model):
    """What a data scientist writes: one class with a predict method."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.pipeline.predict(model_input)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit", action="store_true", help="stop the platform at the end")
    parser.add_argument("--timeout", type=float, default=90.0, help="deployment wait (s)")
    args = parser.parse_args()
    settings = Settings()
    started = time.monotonic()

    platform = ensure_platform(settings, report=step)
    try:
        X, y = load_digits(return_X_y=True, as_frame=True)
        X.columns = [f"pixel_{i}" for i in range(64)]
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        pipeline.fit(X_train, y_train)
        accuracy = float(pipeline.score(X_test, y_test))
        step(f"trained: accuracy on held-out digits {accuracy:.3f}")

        logged = greenbutton.log_model(
            DigitClassifier(pipeline), "digits", reference_data=X_train,
            reference_targets=y_train, settings=settings,
            params={"C": 1.0, "scaler": "standard"}, metrics={"test_accuracy": accuracy},
            description="8x8 digits, logistic regression")
        step(f"logged {logged.model_uri} (run {logged.run_id[:8]}, data {logged.data_digest[:12]})")

        with ControlPlaneClient(settings.server.url or "", token=local_token(settings)) as client:
            client.transition("digits", logged.version, "Production", actor=getpass.getuser(),
                              reason="make demo")
            step(f"promoted digits v{logged.version} to Production — the green button")
            url = wait_until_serving(client, "digits", logged.version, args.timeout)
        step(f"deployed at {url}")

        row = X_test.iloc[[0]]
        response = httpx.post(f"{url}predict", json={"inputs": row.to_dict(orient="records")},
                              timeout=30)
        response.raise_for_status()
        answer = response.json()
        step(f"prediction {answer['predictions']} (truth {int(y_test.iloc[0])}), "
             f"request {answer['request_id']}, answered by v{answer['model']['version']}")
        step(f"done in {time.monotonic() - started:.1f} s")
        print_usage(url, row)
        if not args.exit and platform is not None:
            print("\nThe platform keeps running; press Ctrl-C to stop it.")
            platform.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if platform is not None:
            stop_platform(platform)
    return 0


def step(message: str) -> None:
    print(f"[greenbutton] {message}", flush=True)


def print_usage(url: str, row: pd.DataFrame) -> None:
    body = json.dumps({"inputs": [[float(v) for v in row.iloc[0]]]})
    print(f"""
Call it from anywhere on this machine:
  curl -s -X POST {url}predict -H 'Content-Type: application/json' \\
       -d '{body}'
MLflow-compatible: POST {url}invocations   API docs: {url}docs
Status: greenbutton status          Home: {Path(Settings().home)}""")


if __name__ == "__main__":
    sys.exit(main())
