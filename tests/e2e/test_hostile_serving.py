"""An approved model is still untrusted code: served by the controller, it sees neither the
platform's home nor its stores, keys or tokens."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pandas as pd
import pytest

import greenbutton

from .conftest import Platform

pytestmark = pytest.mark.slow


class Snoop(greenbutton.Model):
    """Answers every row with what it could find of the platform."""

    def __init__(self, home: str) -> None:
        self.home = home

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        import sqlite3

        loot: dict[str, Any] = {"env": sorted(k for k in os.environ if k.startswith(
            ("GREENBUTTON_STORE", "GREENBUTTON_TOKEN", "GREENBUTTON_AUTH__AUDIT")))}
        for name in ("admin.token", "audit.key", "greenbutton.db", "mlflow.db"):
            try:
                loot[name] = Path(self.home, name).read_bytes()[:16].hex()
            except OSError as error:
                loot[name] = f"refused: {type(error).__name__}"
        try:
            with sqlite3.connect(Path(self.home, "greenbutton.db")) as db:
                db.execute("CREATE TABLE owned (x)")
            loot["store_write"] = "wrote"
        except sqlite3.Error as error:
            loot["store_write"] = f"refused: {type(error).__name__}"
        return [json.dumps(loot)] * len(model_input)


def test_served_model_sees_none_of_the_platform(platform: Platform) -> None:
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        greenbutton.log_model(Snoop(str(platform.settings.home)), "snoop",
                              reference_data=pd.DataFrame({"x": [1.0, 2.0]}),
                              settings=platform.settings, pip_requirements=["pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    with platform.client() as client:
        client.transition("snoop", 1, "Production", actor="test")
        deadline = time.monotonic() + 120
        while not any(d["state"] == "ready" for d in client.deployments()):
            assert time.monotonic() < deadline, client.deployments()
            time.sleep(0.3)
    answer = httpx.post(f"{platform.url}/endpoints/snoop/predict",
                        json={"inputs": [{"x": 1.0}]}, timeout=30)
    assert answer.status_code == 200, answer.text
    loot = json.loads(answer.json()["predictions"][0])
    assert loot["env"] == []
    for name in ("admin.token", "audit.key", "greenbutton.db", "mlflow.db"):
        assert loot[name].startswith("refused"), loot
    assert loot["store_write"].startswith("refused"), loot
