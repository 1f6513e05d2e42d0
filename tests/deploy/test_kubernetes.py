"""Generated Kubernetes manifests validate against the schemas of two recent versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from greenbutton.config import Settings
from greenbutton.controller.specs import DeploySpec, ResourcesSpec, RouteRule, ShadowRule, resolve
from greenbutton.controller.targets.kubernetes.apply import (
    apply_manifests,
    parse_target,
    write_manifests,
)
from greenbutton.controller.targets.kubernetes.manifests import KubernetesOptions, render
from greenbutton.errors import GreenbuttonError, NotReady
from greenbutton.store import Stage

K8S_VERSIONS = ["1.36.0", "1.37.0"]  # schemas ship inside kubernetes-validate
AB = DeploySpec(name="wine", model="wine", replicas=2, max_replicas=6,
                  routes=(RouteRule(to="production", weight=80),
                          RouteRule(to="challenger", weight=20)))
SHADOWED = DeploySpec(name="wine", model="wine", shadow=(ShadowRule(to="staging", percent=5),))


def _manifests(operator: bool = True, spec: DeploySpec = AB) -> list[dict[str, Any]]:
    resolved = resolve(spec, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    return render(resolved, spec, KubernetesOptions(namespace="ml",
                                                    has_prometheus_operator=operator))


def _every_kind_of_manifest() -> list[dict[str, Any]]:
    """A/B, shadow, measured memory, CPU limits, an Ingress host: every shape render makes."""
    limited = DeploySpec(name="wine", model="wine", shadow=(ShadowRule(to="staging",
                                                                      percent=5),),
                         resources=ResourcesSpec(cpu_limit="2", memory_limit=None))
    options = KubernetesOptions(namespace="ml", ingress_host="ml.example.com",
                                worker_rss_bytes={3: 300 * 2**20}, payload_store_secret=None)
    resolved = resolve(limited, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    return [*_manifests(operator=False), *_manifests(operator=False, spec=SHADOWED),
            *render(resolved, limited, options)]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_schema(version: str) -> None:
    for manifest in _every_kind_of_manifest():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_manifests_cover_every_kind() -> None:
    kinds = sorted({m["kind"] for m in _manifests()})
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
                     "PodDisruptionBudget", "Service", "ServiceMonitor"]
    assert "ServiceMonitor" not in {m["kind"] for m in _manifests(operator=False)}


def test_deployment_is_non_root_with_health_probes() -> None:
    deployments = [m for m in _manifests() if m["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == ["wine-v3", "wine-v4"]
    pod = deployments[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["envFrom"][0]["secretRef"]["optional"] is True
    assert deployments[0]["spec"]["replicas"] == 2


def test_ingress_canary_carries_the_weights() -> None:
    ingresses = {m["metadata"]["name"]: m for m in _manifests() if m["kind"] == "Ingress"}
    annotations = ingresses["wine-canary"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight-total"] == "100"


def test_ingress_mirrors_the_shadowed_version() -> None:
    ingresses = {m["metadata"]["name"]: m for m in _manifests(spec=SHADOWED)
                 if m["kind"] == "Ingress"}
    main = ingresses["wine"]["metadata"]["annotations"]
    assert "wine-v4.ml.svc" in main["nginx.ingress.kubernetes.io/mirror-target"]


def test_the_shadow_serves_its_percent_of_the_copies_the_ingress_mirrors() -> None:
    """ingress-nginx copies every request: the shadow's pods keep the spec's 5 %."""
    env = {d["metadata"]["name"]: {e["name"]: e.get("value") for e in
                                   d["spec"]["template"]["spec"]["containers"][0]["env"]}
           for d in _manifests(spec=SHADOWED) if d["kind"] == "Deployment"}
    assert env["wine-v4"]["GREENBUTTON_SERVING__MIRROR_PERCENT"] == "5"
    assert "GREENBUTTON_SERVING__MIRROR_PERCENT" not in env["wine-v3"]
    assert Settings(serving={"mirror_percent": env["wine-v4"][  # type: ignore[arg-type]
        "GREENBUTTON_SERVING__MIRROR_PERCENT"]}, _env_file=None  # type: ignore[call-arg]
                    ).serving.mirror_percent == 5.0


def test_write_manifests_round_trips_yaml(tmp_path: Path) -> None:
    path = write_manifests(_manifests(), tmp_path / "gitops", "wine")
    assert list(yaml.safe_load_all(path.read_text())) == _manifests()


def test_parse_target_context_and_namespace() -> None:
    assert parse_target("kubernetes://prod/ml") == ("prod", "ml")
    assert parse_target("kubernetes:///") == (None, "default")
    with pytest.raises(GreenbuttonError):
        parse_target("local://")


def test_apply_without_kubeconfig_raises_not_ready(tmp_path: Path) -> None:
    with pytest.raises(NotReady):
        apply_manifests(_manifests(), context="nowhere", kubeconfig=tmp_path / "missing")


def test_apply_to_unreachable_cluster_raises_not_ready(tmp_path: Path) -> None:
    # as far as the apply path goes without a cluster: config parsed, API server down
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "down",
        "clusters": [{"name": "down", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    with pytest.raises(NotReady):
        apply_manifests(_manifests(), context="down", kubeconfig=kubeconfig)


def _env(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_workers_follow_the_cpu_limit_else_the_request() -> None:
    limited = AB.model_copy(update={"resources": ResourcesSpec(cpu_limit="2500m")})
    resolved = resolve(limited, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    assert _env(render(resolved, limited, KubernetesOptions()))[
        "GREENBUTTON_SERVING__WORKERS"] == "2"
    assert _env(_manifests())["GREENBUTTON_SERVING__WORKERS"] == "1"  # request 250m


def test_pods_share_the_payload_store_and_check_tokens_from_settings() -> None:
    settings = Settings(_env_file=None, kubernetes={  # type: ignore[call-arg]
        "ingress_host": "ml.example.com", "control_plane_url": "http://gb.platform.svc:8600"})
    resolved = resolve(AB, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    env = _env(render(resolved, AB, KubernetesOptions.from_settings(settings, "ml")))
    assert env["GREENBUTTON_MONITORING__PAYLOAD_STORE_URI"] == {
        "secretKeyRef": {"name": "greenbutton-payloads", "key": "uri"}}
    assert env["GREENBUTTON_AUTH__IS_ENDPOINT_AUTH_ENABLED"] == "true"
    assert env["GREENBUTTON_SERVER__URL"] == "http://gb.platform.svc:8600"
    assert env["GREENBUTTON_SERVING__POD_IPS"] == {"fieldRef": {"fieldPath": "status.podIPs"}}
    hosts = env["GREENBUTTON_SERVING__ALLOWED_HOSTS"].split(",")
    assert {"wine-v3", "wine-v3.ml.svc.cluster.local", "ml.example.com"} <= set(hosts)


def test_memory_sized_from_the_measured_worker() -> None:
    spec = AB.model_copy(update={"resources": ResourcesSpec(cpu_limit="2")})
    resolved = resolve(spec, {Stage.PRODUCTION: 3, Stage.STAGING: 4})
    assert resolved is not None
    options = KubernetesOptions(worker_rss_bytes={3: 400 * 2**20},
                                payload_buffer_bytes=64 * 2**20)
    deployments = {m["metadata"]["name"]: m for m in render(resolved, spec, options)
                   if m["kind"] == "Deployment"}

    def resources(name: str) -> dict[str, dict[str, str]]:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        return dict(container["resources"])

    # two workers of 400 MiB × 1.25 + 64 MiB buffer each, plus the supervisor (160 + 400)
    assert resources("wine-v3")["limits"]["memory"] == "1688Mi"
    assert resources("wine-v3")["requests"]["memory"] == "1688Mi"
    assert resources("wine-v4")["limits"]["memory"] == "1Gi"  # not measured: the spec's
