"""``kubernetes://`` against a small real API server on 127.0.0.1, ``kubernetes+dir://`` on
a folder; both driven by the real ``Controller``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from fake_kube_api import APPLY, FakeKubeApi

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller, DeploymentState
from greenbutton.controller.reconcile import (
    Backend,
    DeploymentSpec,
    InstanceState,
    RouteSpec,
    VersionRef,
)
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets import SpecAwareTarget, open_target
from greenbutton.controller.targets.kubernetes.manifests import KubernetesOptions
from greenbutton.controller.targets.kubernetes.sinks import ClusterSink, DirSink
from greenbutton.controller.targets.kubernetes.target import KubernetesTarget
from greenbutton.errors import NotReady

pytest.importorskip("kubernetes")
DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"


def wine(version: int, **extra: object) -> DeploymentSpec:
    return DeploymentSpec(name="wine", model="wine", version=version, **extra)


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


@pytest.fixture
def target(api: FakeKubeApi, tmp_path: Path) -> KubernetesTarget:
    sink = ClusterSink("fake", "ml", kubeconfig=api.write_kubeconfig(tmp_path))
    return KubernetesTarget(sink, KubernetesOptions(namespace="ml"))


def service_of(ingress: dict[str, Any]) -> str:
    name: str = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    return name


def kinds(api: FakeKubeApi) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in api.objects.values())


async def test_start_server_side_applies_version_objects(
    api: FakeKubeApi, target: KubernetesTarget
) -> None:
    await target.desire([wine(1, replicas=3)])
    await target.start(VersionRef("wine", "wine", 1))

    assert kinds(api) == ["Deployment/wine-v1", "HorizontalPodAutoscaler/wine-v1",
                          "PodDisruptionBudget/wine-v1", "Service/wine-v1"]
    patches = [c for c in api.calls if c.method == "PATCH"]
    assert {(c.content_type, c.query["fieldManager"][0], c.query["force"][0])
            for c in patches} == {(APPLY, "greenbutton", "true")}
    assert api.objects[f"{DEPLOYMENTS}/wine-v1"]["spec"]["replicas"] == 3


async def test_observe_reads_ready_replicas_and_progress_deadline(
    api: FakeKubeApi, target: KubernetesTarget
) -> None:
    await target.desire([wine(1, replicas=2)])
    await target.start(VersionRef("wine", "wine", 1))
    [starting] = await target.observe()
    assert (starting.ref, starting.state) == (VersionRef("wine", "wine", 1), InstanceState.STARTING)

    api.set_status(f"{DEPLOYMENTS}/wine-v1", readyReplicas=1)
    assert (await target.observe())[0].state is InstanceState.STARTING  # 1 of 2
    api.set_status(f"{DEPLOYMENTS}/wine-v1", readyReplicas=2)
    [ready] = await target.observe()
    assert ready.state is InstanceState.READY
    assert ready.url == "http://wine-v1.ml.svc.cluster.local:80"  # the Service's port

    api.set_status(f"{DEPLOYMENTS}/wine-v1", conditions=[{
        "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet has timed out progressing."}])
    [failed] = await target.observe()
    assert (failed.state, failed.reason) == (InstanceState.FAILED,
                                             "ReplicaSet has timed out progressing.")


async def test_route_applies_weighted_canary_ingress_then_removes_it(
    api: FakeKubeApi, target: KubernetesTarget
) -> None:
    split = (RouteSpec(version=1, weight=80), RouteSpec(version=2, weight=20))
    await target.desire([wine(1, split=split, replicas=2)])
    backends = (Backend(1, "u1", 40), Backend(1, "u1b", 40), Backend(2, "u2", 20))
    await target.route("wine", backends)
    ingresses = {o["metadata"]["name"]: o for o in api.objects.values() if o["kind"] == "Ingress"}
    canary = ingresses["wine-canary"]["metadata"]["annotations"]
    assert canary["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    assert canary["nginx.ingress.kubernetes.io/canary-weight-total"] == "100"
    assert service_of(ingresses["wine"]) == "wine-v1"

    await target.route("wine", (Backend(2, "u2", 100),))
    assert "Ingress/wine-canary" not in kinds(api)
    main = api.objects["/apis/networking.k8s.io/v1/namespaces/ml/ingresses/wine"]
    assert service_of(main) == "wine-v2"


async def test_controller_rolls_out_blue_green_on_the_cluster(
    api: FakeKubeApi, target: KubernetesTarget, settings: Settings
) -> None:
    desired = [wine(1, replicas=2)]
    routes = RouteTable()
    controller = Controller(lambda: list(desired), target, routes, settings)
    assert isinstance(target, SpecAwareTarget)
    await controller.reconcile_once()
    assert f"{DEPLOYMENTS}/wine-v1" in api.objects
    assert routes.snapshot()["wine"] == ()  # the cluster runs 2 replicas; one instance planned
    api.set_status(f"{DEPLOYMENTS}/wine-v1", readyReplicas=2)
    await controller.reconcile_once()
    assert [b.version for b in routes.snapshot()["wine"]] == [1]
    assert "Ingress/wine" in kinds(api)

    desired[:] = [wine(2, replicas=2)]
    await controller.reconcile_once()
    assert f"{DEPLOYMENTS}/wine-v2" in api.objects
    assert [b.version for b in routes.snapshot()["wine"]] == [1]  # v2 not ready: no switch
    api.set_status(f"{DEPLOYMENTS}/wine-v2", readyReplicas=2)
    await controller.reconcile_once()
    for _ in range(100):
        if not any(k.endswith("wine-v1") for k in kinds(api)):
            break
        await asyncio.sleep(0.02)
        await controller.reconcile_once()
    assert [k for k in kinds(api) if k.endswith("wine-v1")] == []
    ingress = api.objects["/apis/networking.k8s.io/v1/namespaces/ml/ingresses/wine"]
    assert service_of(ingress) == "wine-v2"
    [status] = controller.status()
    assert (status.state, status.serving_version) == (DeploymentState.READY, 2)


async def test_unreachable_api_server_or_missing_kubeconfig_is_not_ready(tmp_path: Path) -> None:
    with FakeKubeApi() as api:
        kubeconfig = api.write_kubeconfig(tmp_path)
    dead = KubernetesTarget(ClusterSink("fake", "ml", kubeconfig=kubeconfig), KubernetesOptions())
    with pytest.raises(NotReady):
        await dead.observe()
    missing = ClusterSink("nope", "ml", kubeconfig=tmp_path / "absent")
    with pytest.raises(NotReady):
        missing.deployments()


async def test_open_target_builds_kubernetes_targets(settings: Settings, tmp_path: Path) -> None:
    assert isinstance(open_target("kubernetes://prod/ml", settings), KubernetesTarget)
    assert isinstance(open_target(f"kubernetes+dir://{tmp_path}", settings), KubernetesTarget)


async def test_gitops_folder_rollout_and_restart(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "gitops"
    target = open_target(f"kubernetes+dir://{folder}", settings)
    desired = [wine(1)]
    routes = RouteTable()
    controller = Controller(lambda: list(desired), target, routes, settings)
    await controller.reconcile_once()
    await controller.reconcile_once()
    files = sorted(p.name for p in folder.glob("*.yaml"))
    assert files == ["deployment-wine-v1.yaml", "horizontalpodautoscaler-wine-v1.yaml",
                     "ingress-wine.yaml", "networkpolicy-wine.yaml",
                     "poddisruptionbudget-wine-v1.yaml", "service-wine-v1.yaml"]
    [status] = controller.status()
    assert status.state is DeploymentState.WRITTEN
    [written] = yaml.safe_load_all((folder / "deployment-wine-v1.yaml").read_text())
    assert written["kind"] == "Deployment"

    desired[:] = [wine(2)]
    for _ in range(20):
        await controller.reconcile_once()
        if not (folder / "deployment-wine-v1.yaml").exists():
            break
    assert sorted(p.name for p in folder.glob("*-wine-v*.yaml")) == [
        "deployment-wine-v2.yaml", "horizontalpodautoscaler-wine-v2.yaml",
        "poddisruptionbudget-wine-v2.yaml", "service-wine-v2.yaml"]
    ingress = yaml.safe_load((folder / "ingress-wine.yaml").read_text())
    assert service_of(ingress) == "wine-v2"

    restarted = KubernetesTarget(DirSink(folder), KubernetesOptions())
    assert [(o.ref.version, o.state) for o in await restarted.observe()] == [
        (2, InstanceState.WRITTEN)]
