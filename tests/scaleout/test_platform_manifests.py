"""deploy/platform/ (the platform itself on Kubernetes) validates against two schema versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from greenbutton.doctor.kubernetes import NEEDED

PLATFORM = Path(__file__).resolve().parents[2] / "deploy" / "platform"
K8S_VERSIONS = ["1.36.0", "1.37.0"]  # the versions the model manifests are validated for


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((PLATFORM / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((PLATFORM / name).read_text()) if d]
    return docs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_platform_manifests_validate(version: str) -> None:
    for document in _documents():
        kubernetes_validate.validate(document, version, strict=True)


def _kind(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_control_plane_is_replicated_probed_bounded_and_non_root() -> None:
    deployment = _kind("Deployment", "greenbutton-control-plane")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/v1/health"
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["GREENBUTTON_STORE__URI"]["valueFrom"]["secretKeyRef"]["name"] == "greenbutton-db"
    assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]
    assert not any("value" in e and "PASSWORD" in str(e["value"]).upper() for e in env.values())


def test_rbac_is_namespaced_and_exactly_what_the_target_needs() -> None:
    kinds = {d["kind"] for d in _documents()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    rules = _kind("Role", "greenbutton-control-plane")["rules"]
    granted = {(group, resource) for rule in rules for group in rule["apiGroups"]
               for resource in rule["resources"]}
    assert granted == set(NEEDED)
    assert all("*" not in rule["verbs"] for rule in rules)


def test_platform_image_is_built_by_the_shipped_dockerfile() -> None:
    dockerfile = (PLATFORM / "Dockerfile").read_text()
    repo = PLATFORM.parents[1]
    tag = next(line.split("-t ")[1].split()[0] for line in dockerfile.splitlines()
               if "docker build" in line)
    for name in ("greenbutton-control-plane", "mlflow"):
        pod = _kind("Deployment", name)["spec"]["template"]["spec"]
        assert {c["image"] for c in pod["containers"]} == {tag}
        assert pod["securityContext"]["runAsUser"] == 10001
    copied = [part for line in dockerfile.splitlines() if line.startswith("COPY ")
              for part in line.split()[1:-1]]
    assert copied and all((repo / part).exists() for part in copied)
    assert "USER 10001" in dockerfile
