"""The green-button path end to end: log → promote → deployed → predict → roll → archive.

Real MLflow (SQLite, local artifacts), a real `greenbutton up` process, real serving
processes and real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.client import ControlPlaneClient

from .conftest import Platform, free_port

pytestmark = pytest.mark.slow


def _digits() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    return X, y


def _log(platform: Platform, C: float) -> greenbutton.LoggedModel:
    class Digits(greenbutton.Model):
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

    X, y = _digits()
    clf = LogisticRegression(C=C, max_iter=300).fit(X, y)
    return greenbutton.log_model(Digits(clf), "digits", reference_data=X,
                                 settings=platform.settings, params={"C": C},
                                 pip_requirements=["scikit-learn", "pandas"])


def _wait_serving(client: ControlPlaneClient, version: int, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in client.deployments():
            if d["name"] == "digits" and d["state"] == "ready" and d["serving_version"] == version:
                return str(d["url"])
        time.sleep(0.2)
    raise AssertionError(f"v{version} not deployed: {client.deployments()}")


class RequestLoop(threading.Thread):
    """Bounded closed loop of predictions through the stable URL, counting outcomes."""

    def __init__(self, url: str, body: dict[str, Any], max_requests: int = 4000,
                 max_seconds: float = 60) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as http:
            for _ in range(self.max_requests):
                if self.halt.is_set() or time.monotonic() > deadline:
                    return
                try:
                    response = http.post(self.url, json=self.body)
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    self.versions[str(response.json()["model"]["version"])] += 1


def test_promote_deploys_and_rollout_loses_no_request(platform: Platform) -> None:
    v1 = _log(platform, C=1.0)
    X, y = _digits()
    body = {"inputs": X.head(3).to_dict(orient="records")}
    with platform.client() as client:
        client.transition("digits", v1.version, "Production", actor="alice", reason="first")
        url = _wait_serving(client, v1.version)
        first = httpx.post(f"{url}predict", json=body, timeout=30)
        assert first.status_code == 200
        assert first.json()["predictions"] == y.head(3).tolist()
        assert first.json()["model"] == {"name": "digits", "version": str(v1.version)}

        v2 = _log(platform, C=0.5)
        loop = RequestLoop(f"{url}predict", body)
        loop.start()
        while sum(loop.versions.values()) < 20 and loop.is_alive():
            time.sleep(0.05)
        client.transition("digits", v2.version, "Production", actor="alice", reason="second")
        assert _wait_serving(client, v2.version) == url  # the stable URL does not change
        settle = sum(loop.versions.values())
        while sum(loop.versions.values()) < settle + 50 and loop.is_alive():
            time.sleep(0.05)
        loop.halt.set()
        loop.join(timeout=60)

        assert loop.failures == []
        assert loop.versions[str(v1.version)] > 0 and loop.versions[str(v2.version)] > 0
        history = [(t["version"], t["from_stage"], t["to_stage"]) for t in client.history("digits")]
        assert history == [(1, "None", "Production"), (1, "Production", "Archived"),
                           (2, "None", "Production")]


def test_archive_production_stops_deployment(platform: Platform) -> None:
    v1 = _log(platform, C=1.0)
    with platform.client() as client:
        client.transition("digits", v1.version, "Production", actor="alice")
        url = _wait_serving(client, v1.version)
        client.transition("digits", v1.version, "Archived", actor="alice", reason="retired")
        deadline = time.monotonic() + 30
        while client.deployments() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.deployments() == []
    assert httpx.post(f"{url}predict", json={"inputs": [[0.0] * 64]}, timeout=10).status_code == 404


def test_status_cli_lists_models_and_urls(platform: Platform) -> None:
    v1 = _log(platform, C=1.0)
    run = [sys.executable, "-m", "greenbutton"]
    promote = subprocess.run([*run, "promote", "digits", "latest", "--reason", "cli"],
                             env=platform.env(), capture_output=True, text=True, timeout=60)
    assert promote.returncode == 0, promote.stderr
    with platform.client() as client:
        url = _wait_serving(client, v1.version)
    status = subprocess.run([*run, "status"], env=platform.env(), capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "digits" in status.stdout and url in status.stdout
    missing = subprocess.run([*run, "promote", "nosuchmodel", "1"], env=platform.env(),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "nosuchmodel" in missing.stderr


def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    env = {**os.environ, "GREENBUTTON_HOME": str(tmp_path / "gb"),
           "GREENBUTTON_SERVER__PORT": str(free_port())}
    demo = Path(__file__).parents[2] / "examples" / "digits_demo.py"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(demo), "--exit"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "prediction [" in done.stdout and "/endpoints/digits/" in done.stdout
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(("script", "expected"), [
    ("wine_ab_demo.py", "wins; promote it"),
    ("governance_demo.py", "lifecycle.transition"),
])
def test_other_demos_run_to_the_end(tmp_path: Path, script: str, expected: str) -> None:
    env = {**os.environ, "GREENBUTTON_HOME": str(tmp_path / "gb"),
           "GREENBUTTON_SERVER__PORT": str(free_port())}
    demo = Path(__file__).parents[2] / "examples" / script
    done = subprocess.run([sys.executable, str(demo), "--exit"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert expected in done.stdout
