"""kill -9 of `greenbutton up` while a promotion's gates run: the promotion is on record while
they run, and the restarted control plane fails it, audited, instead of losing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import pandas as pd
import pytest

import greenbutton
from greenbutton.config import Settings
from greenbutton.errors import GreenbuttonError
from greenbutton.model import model_test
from greenbutton.store.governance_records import RequestRecord
from greenbutton.store.governance_sql import open_governance_store

from .conftest import Platform, platform_settings, wait_healthy

pytestmark = pytest.mark.slow
LEASE_S = 1.0


class SlowCheck(greenbutton.Model):
    """A version whose own check takes minutes: its gates are still running at the kill."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]

    @model_test
    def takes_its_time(self, context: Any) -> None:
        time.sleep(300)


def start_up(settings: Settings, log: Path) -> Platform:
    env = {**os.environ, **settings.environ(), "GREENBUTTON_AUTH__GATE_LEASE_S": str(LEASE_S)}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    platform = Platform(settings, process, log)
    wait_healthy(platform)
    return platform


def requests_of(settings: Settings, model: str) -> list[RequestRecord]:
    store = open_governance_store(f"sqlite:///{settings.home / 'greenbutton.db'}")
    try:
        return store.list_requests(model)
    finally:
        store.close()


def wait_for(settings: Settings, model: str, status: str, timeout_s: float) -> RequestRecord:
    deadline = time.monotonic() + timeout_s
    found: list[RequestRecord] = []
    while time.monotonic() < deadline:
        found = requests_of(settings, model)
        if found and found[0].status == status:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{model}'s request never reached {status!r}: {found}")


def test_gates_cut_by_a_killed_control_plane_are_failed_after_restart(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path / "gb")
    settings.home.mkdir(parents=True)
    log = settings.home / "control-plane.log"
    model = f"slow-{uuid.uuid4().hex[:6]}"
    first = start_up(settings, log)
    previous = mlflow.get_tracking_uri()
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the sandbox cannot import the tests
    try:
        greenbutton.log_model(SlowCheck(), model, reference_data=pd.DataFrame({"x": [1.0, 2.0]}),
                              settings=settings, pip_requirements=["pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
        mlflow.set_tracking_uri(previous)
    answers: list[object] = []

    def promote() -> None:
        try:
            with first.client() as client:
                answers.append(client.move(model, 1, "Production", actor="admin"))
        except GreenbuttonError as error:
            answers.append(error)

    caller = threading.Thread(target=promote, daemon=True)
    caller.start()
    second: Platform | None = None
    try:
        gating = wait_for(settings, model, "gating", timeout_s=60)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
        caller.join(30)
        assert len(answers) == 1 and isinstance(answers[0], Exception), answers
        assert requests_of(settings, model)[0].status == "gating"  # on record, unfinished
        second = start_up(settings, log)
        failed = wait_for(settings, model, "failed", timeout_s=LEASE_S * 1.5 + 20)
        assert (failed.id, failed.decided_by) == (gating.id, "greenbutton")
        assert "control plane running them stopped" in (failed.decision_reason or "")
        with second.client() as client:
            stages = {v["version"]: v["stage"] for v in client.versions(model)}
        assert stages[1] == "None"
    finally:
        for running in (first, second):
            if running is not None and running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
                running.process.wait(60)
