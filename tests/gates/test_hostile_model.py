"""A proposed model is hostile code: at proposal time, before any human looked, its gates run
it. Whatever it tries, it gets none of the platform's secrets, stores or network."""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import pandas as pd
import pytest

import greenbutton
from greenbutton.config import Settings
from greenbutton.model import model_test
from greenbutton.wiring import build_gate_runner
from mlflow_template import seed_mlflow_db

SECRET = f"gb_admin-{uuid.uuid4().hex}"


class Thief(greenbutton.Model):
    """Tries, at load time and in its own check, every side door it can think of."""

    def __init__(self, home: str, port: int) -> None:
        self.home, self.port = home, port

    def load_context(self, context: Any) -> None:
        self.loot: dict[str, Any] = {}
        try:
            self.loot["token"] = Path(self.home, "admin.token").read_text()
        except OSError as error:
            self.loot["token"] = f"refused: {type(error).__name__}"

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]

    @model_test
    def steal(self, context: Any) -> None:
        import sqlite3

        loot = dict(self.loot)
        loot["env"] = sorted(k for k in os.environ
                             if k.startswith(("GREENBUTTON", "MLFLOW", "AWS", "PG")))[:3]
        loot["secret_in_env"] = any(SECRET in v for v in os.environ.values())
        try:
            with sqlite3.connect(Path(self.home, "greenbutton.db")) as db:
                db.execute("CREATE TABLE IF NOT EXISTS owned (x)")
            loot["store_write"] = "wrote"
        except sqlite3.Error as error:
            loot["store_write"] = f"refused: {type(error).__name__}"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                loot["control_plane"] = "connected"
        except OSError as error:
            loot["control_plane"] = f"refused: {type(error).__name__}"
        raise AssertionError(json.dumps(loot))


@pytest.fixture(scope="module")
def control_plane_port() -> Iterator[int]:
    """Something listening on loopback, as the control plane does."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield int(server.getsockname()[1])


@pytest.fixture(scope="module")
def loot(tmp_path_factory: pytest.TempPathFactory, control_plane_port: int) -> dict[str, Any]:
    """What the hostile version's gates brought back (the test reads its failing check)."""
    home = tmp_path_factory.mktemp("hostile") / "gb"
    home.mkdir(mode=0o700)
    (home / "admin.token").write_text(SECRET)
    os.chmod(home / "admin.token", 0o600)
    settings = Settings(home=home, _env_file=None)  # type: ignore[call-arg]
    seed_mlflow_db(settings)
    previous = mlflow.get_tracking_uri()
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the sandbox cannot import the tests
    try:
        greenbutton.log_model(Thief(str(home), control_plane_port), "thief",
                              reference_data=pd.DataFrame({"x": [1.0, 2.0, 3.0]}),
                              settings=settings, pip_requirements=["pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        mlflow.set_tracking_uri(previous)
    os.environ["GREENBUTTON_TOKEN"] = SECRET  # what the control plane's environment may hold
    try:
        outcomes = {o.gate: o for o in build_gate_runner(settings).run("thief", 1)}
    finally:
        del os.environ["GREENBUTTON_TOKEN"]
    reason = outcomes["model_test:steal"].detail["reason"]
    return dict(json.loads(reason.removeprefix("AssertionError: ")))


def test_model_cannot_read_the_admin_token(loot: dict[str, Any]) -> None:
    assert loot["token"].startswith("refused"), loot


def test_model_sees_no_platform_setting_or_credential(loot: dict[str, Any]) -> None:
    assert loot["env"] == [] and not loot["secret_in_env"], loot


def test_model_cannot_write_the_store(loot: dict[str, Any]) -> None:
    assert loot["store_write"].startswith("refused"), loot


def test_model_cannot_reach_the_control_plane(loot: dict[str, Any]) -> None:
    assert loot["control_plane"].startswith("refused"), loot
