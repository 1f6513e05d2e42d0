"""`greenbutton doctor` against real backends: PostgreSQL, MLflow on it, S3 (s3rver)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from mlflow import MlflowClient

from greenbutton.config import Settings
from greenbutton.doctor.checks import check_all, render
from greenbutton.store.migrate import upgrade

from .conftest import BUCKET, env_without_greenbutton, mlflow_pg


def _settings(tmp_path: Path, **sections: object) -> Settings:
    return Settings(home=tmp_path / "gb", _env_file=None, **sections)  # type: ignore[call-arg, arg-type]


def _failed(settings: Settings) -> dict[str, str]:
    return {f.backend: f.message for f in check_all(settings) if not f.ok}


def test_embedded_default_is_healthy(tmp_path: Path) -> None:
    assert _failed(_settings(tmp_path)) == {}


def test_postgres_store_schema_and_privileges(tmp_path: Path, fresh_pg: str) -> None:
    settings = _settings(tmp_path, store={"uri": fresh_pg})
    assert "no greenbutton schema yet" in _failed(settings)["store"]
    upgrade(fresh_pg)
    assert "store" not in _failed(settings)
    with psycopg.connect(fresh_pg, autocommit=True) as admin:
        admin.execute("CREATE ROLE doctor_reader LOGIN")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO doctor_reader")
    reader = fresh_pg.replace("//greenbutton@", "//doctor_reader@")
    message = _failed(_settings(tmp_path, store={"uri": reader}))["store"]
    assert "may not CREATE" in message or "lacks SELECT/INSERT/UPDATE/DELETE" in message
    unreachable = _settings(tmp_path, store={"uri": "postgresql://x@127.0.0.1:1/none"})
    assert "unreachable" in _failed(unreachable)["store"]


def test_mlflow_on_postgres_and_artifacts_on_s3(tmp_path: Path, fresh_pg: str,
                                                s3_env: dict[str, str]) -> None:
    settings = _settings(tmp_path, mlflow={"tracking_uri": mlflow_pg(fresh_pg),
                                           "artifact_root": f"s3://{BUCKET}/artifacts"})
    MlflowClient(mlflow_pg(fresh_pg)).search_experiments()  # MLflow creates its tables
    findings = check_all(settings)
    assert all(f.ok for f in findings), render(findings)
    assert "MLflow schema" in next(f.message for f in findings if f.backend == "mlflow")
    plain = _settings(tmp_path, mlflow={"tracking_uri": fresh_pg})
    assert "postgresql+psycopg" in _failed(plain)["mlflow"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"AWS_ACCESS_KEY_ID": "WRONG"}, "refused the credentials"),
    ({"MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:1"}, "cannot reach the S3 endpoint"),
    ({"GREENBUTTON_MLFLOW__ARTIFACT_ROOT": "s3://no-such-bucket/a"}, "bucket does not exist"),
])
def test_s3_problems_are_named(tmp_path: Path, s3_env: dict[str, str], change: dict[str, str],
                               expected: str) -> None:
    # a process per check, as users run it (MLflow caches its boto3 client per process)
    env = {**env_without_greenbutton(), **s3_env, "GREENBUTTON_HOME": str(tmp_path / "gb"),
           "GREENBUTTON_MLFLOW__ARTIFACT_ROOT": f"s3://{BUCKET}/artifacts", **change}
    run = subprocess.run([sys.executable, "-m", "greenbutton", "doctor"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "FAIL  artifacts" in run.stdout and expected in run.stdout, run.stdout


def test_cli_exit_status(tmp_path: Path) -> None:
    env = {**env_without_greenbutton(), "GREENBUTTON_HOME": str(tmp_path / "gb")}
    run = [sys.executable, "-m", "greenbutton", "doctor"]
    good = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = subprocess.run(run, env={**env, "GREENBUTTON_STORE__URI": "postgresql://x@127.0.0.1:1/n",
                                   "GREENBUTTON_CONTROLLER__TARGET_URI": "kubernetes://nope/ml",
                                   "KUBECONFIG": str(tmp_path / "missing")},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "FAIL  store" in bad.stdout and "FAIL  target" in bad.stdout
