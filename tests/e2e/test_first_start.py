"""First start on a fresh home: `greenbutton up` and four `log_model` processes started at the
same instant initialise each embedded store once, and every process succeeds; `log_model`
alone makes a home `up` then uses as is; a second `up` on a home refuses, naming the first."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from greenbutton.store.migrate import current_revision, head_revision

from .conftest import Platform, free_port, platform_settings, wait_healthy

CHILD = Path(__file__).with_name("first_start_child.py")
LOGGERS = 4
ROUNDS = 2
"""Rounds in the default suite (~11 s each on 2 cores); the bench tier runs 20."""
START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 180.0


@dataclass
class Child:
    """One process of a round, its output in files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"


def _spawn(what: str, folder: Path, name: str, env: dict[str, str]) -> Child:
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), what, str(folder / f"{name}.ready"),
             str(folder / "go")], env=env, cwd=folder, stdout=stdout, stderr=stderr)
    return Child(process, out, err)


def _start_together(children: list[Child], folder: Path) -> None:
    """Wait (bounded) until every child is ready, then start them all at once."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(list(folder.glob("*.ready"))) < len(children):
        for child in children:
            assert child.process.poll() is None, child.output()
        assert time.monotonic() < deadline, "children not ready in time"
        time.sleep(0.05)
    (folder / "go").touch()


def _stop(child: Child) -> None:
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _mlflow_schema_rows(home: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(home / "mlflow.db") as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall()


def _run_round(folder: Path) -> None:
    """`up` and LOGGERS `log_model` at once on a fresh home; assert the home is whole."""
    folder.mkdir()
    settings = platform_settings(folder / "gb")  # the home itself does not exist yet
    env = {**os.environ, **settings.environ()}
    up = _spawn("up", folder, "up", env)
    loggers = [_spawn("log_model", folder, f"log-{i}", env) for i in range(LOGGERS)]
    try:
        _start_together([up, *loggers], folder)
        logged = []
        for child in loggers:
            child.process.wait(timeout=RUN_TIMEOUT_S)
            assert child.process.returncode == 0, child.output()
            logged.append(json.loads(child.out.read_text().splitlines()[-1]))
        wait_healthy(Platform(settings, up.process, up.err))
    finally:
        for child in (*loggers, up):
            _stop(child)
    home = settings.home
    assert len(_mlflow_schema_rows(home)) == 1
    assert current_revision(settings.store.uri) == head_revision()
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    registered = {int(v.version): v.run_id for v in client.search_model_versions("name='tiny'")}
    assert sorted(registered) == [1, 2, 3, 4]
    assert len(set(registered.values())) == LOGGERS
    assert registered == {item["version"]: item["run_id"] for item in logged}


@pytest.mark.slow
def test_up_and_log_model_at_once_on_a_fresh_home_initialise_once(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        _run_round(tmp_path / f"round-{round_}")


@pytest.mark.bench
def test_up_and_log_model_at_once_on_a_fresh_home_initialise_once_20_rounds(
        tmp_path: Path) -> None:
    for round_ in range(20):
        _run_round(tmp_path / f"round-{round_}")


@pytest.mark.slow
def test_up_uses_as_is_a_home_that_log_model_made_alone(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path / "gb")
    env = {**os.environ, **settings.environ()}
    (tmp_path / "go").touch()
    alone = _spawn("log_model", tmp_path, "alone", env)
    assert alone.process.wait(timeout=RUN_TIMEOUT_S) == 0, alone.output()
    up = _spawn("up", tmp_path, "up", env)
    platform = Platform(settings, up.process, up.err)
    try:
        wait_healthy(platform)
        with platform.client() as client:
            assert [v["version"] for v in client.versions("tiny")] == [1]
    finally:
        _stop(up)
    assert len(_mlflow_schema_rows(settings.home)) == 1
    assert "Creating initial MLflow database tables" not in up.err.read_text()


@pytest.mark.slow
def test_second_up_on_one_home_refuses_naming_the_first(platform: Platform) -> None:
    second = platform.settings.listening(server_port=free_port())  # the home is what clashes
    done = subprocess.run([sys.executable, "-m", "greenbutton", "up"],
                          env={**os.environ, **second.environ()}, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"pid {platform.process.pid}, {platform.url}" in done.stderr
    with platform.client() as client:
        assert client.health()  # the first one goes on
