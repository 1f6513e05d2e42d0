"""greenbutton.log_model is quiet: no MLflow progress bars or chatter, the user's warnings kept.

Each test runs a real log_model (SQLite MLflow under tmp_path) in a child process, with
Python's default warning filters, and reads everything it wrote to stdout and stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

CHILD = Path(__file__).with_name("quiet_child.py")
USER_WARNING = "the user's own warning from predict"
AFTER_CALL = "an MLflow warning after the call"
DURING_CALL = "an MLflow warning during the call"
TQDM_MARKS = ("%|", "it/s]", "█", "Downloading artifacts", "Uploading artifacts")


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items()
               if not k.startswith(("GREENBUTTON_", "MLFLOW_", "PYTHONWARNINGS"))}, **extra}


def _log_in_child(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-W", "default", str(CHILD), str(home), *args],
                          capture_output=True, text=True, timeout=240, check=False,
                          env=_clean_env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("gb")
    return home, _log_in_child(home)


def test_log_model_prints_no_progress_bar(quiet_run: tuple[Path, str]) -> None:
    _, output = quiet_run
    assert not [mark for mark in TQDM_MARKS if mark in output], output


def test_log_model_prints_no_mlflow_chatter(quiet_run: tuple[Path, str]) -> None:
    _, output = quiet_run
    for noise in ("CloudPickle", "cloudpickle", "Successfully registered model",
                  "Created version", "Creating initial MLflow database tables",
                  "Validating input example", "DeprecationWarning", "Pandas4Warning"):
        assert noise not in output, output


def test_log_model_quiet_still_registers_the_version(quiet_run: tuple[Path, str]) -> None:
    home, output = quiet_run
    uri = f"sqlite:///{home / 'mlflow.db'}"
    assert MlflowClient(uri, uri).get_model_version("tiny", "1").name == "tiny"
    assert "version=1 " in output


def test_log_model_keeps_the_users_warnings(quiet_run: tuple[Path, str]) -> None:
    _, output = quiet_run
    assert USER_WARNING in output


def test_log_model_keeps_mlflows_other_warnings(quiet_run: tuple[Path, str]) -> None:
    _, output = quiet_run
    assert f"WARNING mlflow.pyfunc: {DURING_CALL}" in output


def test_log_model_restores_mlflow_output_afterwards(quiet_run: tuple[Path, str]) -> None:
    _, output = quiet_run
    assert AFTER_CALL in output
    assert "progress_bar=unset" in output


def test_log_model_verbose_leaves_mlflow_output_alone(tmp_path: Path) -> None:
    output = _log_in_child(tmp_path / "gb", "verbose")
    assert "Downloading artifacts" in output
    assert "Successfully registered model" in output


def test_explain_command_prints_no_progress_bar(quiet_run: tuple[Path, str],
                                                tmp_path: Path) -> None:
    """Run from an empty folder: the model is found in GREENBUTTON_HOME's registry, not in
    an ./mlflow.db MLflow would fall back to."""
    pytest.importorskip("shap", reason="explanations need the greenbutton[explain] extra")
    home, _ = quiet_run
    done = subprocess.run([sys.executable, "-m", "greenbutton", "explain", "models:/tiny/1",
                           "--row", "0"], capture_output=True, text=True, timeout=240,
                          check=False, cwd=tmp_path, env=_clean_env(GREENBUTTON_HOME=str(home)))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "predicted" in done.stdout
    assert not [mark for mark in TQDM_MARKS if mark in output], output
