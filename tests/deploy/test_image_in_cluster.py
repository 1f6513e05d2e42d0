"""The image's entrypoint, run as Kubernetes would run it from the generated manifests,
answers kubelet's probes (Host: the pod IP) and Service callers, and refuses other hosts.

No Docker engine is needed: the entrypoint and ``ENV`` lines are read from the generated
Dockerfile and run from the build context (the image's ``WORKDIR``), with the container's
``args`` and ``env`` of the generated Deployment (downward-API fields filled in as kubelet
fills them). Only the listening address is moved to 127.0.0.1 and a free port.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes

from greenbutton.config import Settings
from greenbutton.controller.specs import DeploySpec, resolve
from greenbutton.controller.targets.kubernetes.manifests import KubernetesOptions, render
from greenbutton.controller.targets.worker_memory import RSS_TAG
from greenbutton.store import Stage

POD_IPS = "10.244.1.17,fd00:10:244:1::17"
NAMESPACE = "ml"
INGRESS_HOST = "models.example.com"


@pytest.fixture(scope="module")
def context(diabetes_home: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Path]:
    """The context ``greenbutton build diabetes 1 --out DIR`` writes (no Docker here)."""
    settings = diabetes_home
    out = tmp_path_factory.mktemp("ctx") / "ctx"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(settings.home),
           "GREENBUTTON_HOME": str(settings.home)}
    done = subprocess.run([str(Path(sys.executable).parent / "greenbutton"), "build",
                           "diabetes", "1", "--out", str(out), "--no-image"],
                          env=env, cwd=out.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"docker build -t greenbutton/diabetes:1 {out}" in done.stdout
    assert "one worker holds" in done.stdout, done.stdout  # measured, kept as a version tag
    rss = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri
                       ).get_model_version("diabetes", "1").tags[RSS_TAG]
    assert 50 * 2**20 < int(rss) < 2 * 2**30
    yield out


def _container() -> dict[str, Any]:
    spec = DeploySpec(name="diabetes", model="diabetes")
    resolved = resolve(spec, {Stage.PRODUCTION: 1})
    assert resolved is not None
    options = KubernetesOptions(namespace=NAMESPACE, ingress_host=INGRESS_HOST)
    deployment = next(m for m in render(resolved, spec, options) if m["kind"] == "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _image(context: Path) -> tuple[list[str], dict[str, str], str]:
    """(ENTRYPOINT, ENV, WORKDIR) of the generated Dockerfile."""
    text = (context / "Dockerfile").read_text().replace("\\\n", " ")
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    workdir = re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env.update(pair.split("=", 1) for pair in line.split())
    return entrypoint, env, workdir


def _kubelet_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]
                 ) -> dict[str, str]:
    """The container's ``env`` as kubelet resolves it: downward-API fields of this pod,
    keys of ``secrets``; optional Secrets that do not exist are left out (as kubelet does)."""
    fields = {"status.podIPs": POD_IPS, "status.podIP": POD_IPS.split(",")[0],
              "metadata.namespace": NAMESPACE, "metadata.name": "diabetes-v1-5d9c7-x2x9z"}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]),
                                       item["value"])
        elif "fieldRef" in source:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif "resourceFieldRef" in source:
            continue  # the container's limits: none in this pod
        else:
            ref = source["secretKeyRef"]
            if ref["name"] in secrets:
                env[item["name"]] = secrets[ref["name"]][ref["key"]]
            else:
                assert ref.get("optional") is True, f"pod would not start without {ref}"
    for source in container.get("envFrom", []):
        ref = source["secretRef"]
        env.update(secrets.get(ref["name"], {}))
        assert ref["name"] in secrets or ref.get("optional") is True, ref
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _argv(entrypoint: list[str], args: list[str], port: int) -> list[str]:
    moved = {"--host": "127.0.0.1", "--port": str(port)}  # a free loopback port, not :8080
    argv = [str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:]]
    for i, arg in enumerate(args):
        argv.append(moved.get(args[i - 1], arg) if i else arg)
    return argv


@pytest.fixture(scope="module")
def pod(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    container = _container()
    entrypoint, image_env, workdir = _image(context)
    home = tmp_path_factory.mktemp("pod")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home),
           **{k: v.replace(workdir, str(context)) for k, v in image_env.items()},
           "GREENBUTTON_HOME": str(home / "greenbutton"),
           **_kubelet_env(container, {"greenbutton-payloads": {  # the shared store's Secret
               "uri": f"sqlite:///{home / 'payloads.db'}"}})}
    port = _free_port()
    argv = _argv(entrypoint, container.get("args", []), port)
    log = (home / "serve.log").open("wb")
    server = subprocess.Popen(argv, cwd=context, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the entrypoint never answered"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        print((home / "serve.log").read_text(), file=sys.stderr)


def _probe(url: str, path: str, host: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(f"{url}{path}", headers={"Host": host}, timeout=5)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("address", POD_IPS.split(","))
def test_kubelet_probes_with_pod_ip_host_pass(pod: str, address: str) -> None:
    host = f"[{address}]:8080" if ":" in address else f"{address}:8080"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        path = _container()[probe]["httpGet"]["path"]
        assert _probe(pod, path, host).status_code == 200, (probe, host)


@pytest.mark.slow
@pytest.mark.parametrize("host", ["diabetes-v1", f"diabetes-v1.{NAMESPACE}",
                                  f"diabetes-v1.{NAMESPACE}.svc",
                                  f"diabetes-v1.{NAMESPACE}.svc.cluster.local:80",
                                  INGRESS_HOST, "localhost:8080"])
def test_service_and_ingress_hosts_are_accepted_and_need_a_token(pod: str, host: str) -> None:
    ready = _probe(pod, "/health/ready", host)
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": "diabetes", "version": "1"}
    X, _ = load_diabetes(return_X_y=True, as_frame=True)
    answer = httpx.post(f"{pod}/predict", headers={"Host": host}, timeout=10,
                        json={"inputs": X.head(2).to_dict(orient="records")})
    assert answer.status_code == 401  # endpoint auth is on: past the Host check, no token


@pytest.mark.slow
@pytest.mark.parametrize("host", ["evil.example", "10.244.1.18:8080", "diabetes-v2.ml.svc",
                                  "diabetes-v1.other.svc"])
def test_unknown_hosts_are_refused(pod: str, host: str) -> None:
    assert httpx.get(f"{pod}/health/ready", headers={"Host": host}, timeout=5).status_code == 400


@pytest.mark.slow
def test_image_entrypoint_names_the_model_version(context: Path) -> None:
    entrypoint, _, _ = _image(context)
    assert entrypoint[-1] == "models:/diabetes/1"
    assert os.path.isdir(context / "model")
