"""``greenbutton manifests NAME``: the stored spec resolved to versions, written as YAML, with
memory sized from the worker ``greenbutton build`` measured."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from mlflow import MlflowClient
from test_kubernetes import K8S_VERSIONS

from greenbutton.cli.images import manifests
from greenbutton.config import Settings
from greenbutton.controller.targets.worker_memory import RSS_TAG


class SpecsOnlyClient:
    """The two control-plane calls ``manifests`` makes, answered from fixed data."""

    def get_spec(self, name: str) -> dict[str, Any]:
        return {"spec": {"model": "wine", "routes": [{"to": "production", "weight": 80},
                                                     {"to": "staging", "weight": 20}]}}

    def models(self) -> list[dict[str, Any]]:
        return [{"name": "wine", "production": 1, "staging": 2}]


def test_manifests_written_with_measured_memory(settings: Settings, mlflow_client: MlflowClient,
                                                tmp_path: Path) -> None:
    mlflow_client.create_registered_model("wine")
    for _ in range(2):
        mlflow_client.create_model_version("wine", source=(tmp_path / "m").as_uri())
    mlflow_client.set_model_version_tag("wine", "1", RSS_TAG, str(300 * 2**20))
    args = argparse.Namespace(name="wine", out=tmp_path / "k8s", namespace="ml")
    assert manifests(SpecsOnlyClient(), settings, args) == 0  # type: ignore[arg-type]
    written = list(yaml.safe_load_all((tmp_path / "k8s" / "wine.yaml").read_text()))
    deployments = {m["metadata"]["name"]: m for m in written if m["kind"] == "Deployment"}
    memory = {name: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
              ["memory"] for name, d in deployments.items()}
    assert memory == {"wine-v1": "439Mi", "wine-v2": "1Gi"}  # 300 × 1.25 + 64; not measured
    assert {m["metadata"]["namespace"] for m in written} == {"ml"}
    for version in K8S_VERSIONS:
        for manifest in written:
            kubernetes_validate.validate(manifest, version, strict=True)
