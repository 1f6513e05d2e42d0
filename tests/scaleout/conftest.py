"""Real parts for the scale-out suite: fresh PostgreSQL databases and an S3-compatible server.

The S3 server is s3rver (npm package ``s3rver``, installed by ``make test-deps``): a separate
Node.js process implementing the S3 REST API (SigV4 checked, multipart uploads, ListObjectsV2)
on a folder — not an in-process mock. Its fixed credentials are ``S3RVER``/``S3RVER``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_server import new_database

S3_KEY = "S3RVER"
BUCKET = "greenbutton"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fresh_pg(postgres_uri: str) -> str:
    """A new, empty database on the test PostgreSQL server."""
    return new_database(postgres_uri, "so")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a running s3rver with the bucket ``greenbutton``."""
    binary = shutil.which("s3rver")
    if binary is None:
        pytest.fail("s3rver not found: run `make test-deps` (npm install -g s3rver)")
    folder = tmp_path_factory.mktemp("s3")
    port = free_port()
    log = (folder / "s3rver.log").open("wb")
    process = subprocess.Popen([binary, "-d", str(folder / "data"), "-a", "127.0.0.1", "-p",
                                str(port), "--configure-bucket", BUCKET, "--silent"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"s3rver did not start: {(folder / 's3rver.log').read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment MLflow (and boto3) read to reach the S3 server, set for this test."""
    env = {"MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": S3_KEY,
           "AWS_SECRET_ACCESS_KEY": S3_KEY, "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def mlflow_pg(uri: str) -> str:
    """MLflow's URI for the same database: SQLAlchemy with psycopg 3 (psycopg2 is absent)."""
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def env_without_greenbutton() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GREENBUTTON_")}


ROOT = Path(__file__).resolve().parents[2]
