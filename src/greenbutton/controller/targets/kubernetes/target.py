"""``kubernetes://context/namespace`` and ``kubernetes+dir:///path``: versions as Kubernetes
objects, applied to a cluster (server-side apply) or written to a folder for GitOps tools.

Per version, ``start`` applies its Deployment, Service, HPA and PDB (``deploy.kubernetes``);
``stop`` deletes them; ``route`` applies the deployment's Ingress (ingress-nginx: the heavier
version is the main Ingress, a second weighted version a canary Ingress with
``canary-weight``/``canary-weight-total`` equal to the route's weights, a shadow a
``mirror-target``) and NetworkPolicy. The cluster runs the replicas (the Deployment's
``replicas``), so the controller plans one instance per version. ``close`` deletes nothing:
what runs in a cluster outlives the controller. Usage::

    target = KubernetesTarget(ClusterSink("prod", "ml"), KubernetesOptions(namespace="ml"))
    await target.desire(desired)        # the controller does this every pass
    await target.start(VersionRef("wine", "wine", 3))
    await target.observe()              # ready once readyReplicas >= replicas
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from ....errors import NotReady
from ...reconcile import (
    Backend,
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    RouteSpec,
    ShadowSpec,
    VersionRef,
)
from ...rollouts import shares_by_version
from ...specs import DeploySpec, ResourcesSpec
from .manifests import (
    DEPLOYMENT_ANNOTATION,
    SERVICE_PORT,
    KubernetesOptions,
    Manifest,
    render,
)

VERSION_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
ROUTE_KINDS = ("Ingress", "NetworkPolicy", "ServiceMonitor")


class Sink(Protocol):
    """Where manifests go: a cluster's API server, or a folder (blocking calls)."""

    def apply(self, manifests: Sequence[Manifest]) -> None:
        """Create or update every object."""
        ...

    def delete(self, manifests: Sequence[Manifest]) -> None:
        """Remove these objects (by kind and name); absent ones are fine."""
        ...

    def deployments(self) -> list[Manifest]:
        """Every greenbutton-managed Deployment, with ``status`` where the sink has one."""
        ...

    def state_of(self, deployment: Manifest) -> tuple[InstanceState, str | None]:
        """The instance state (and a reason) of one Deployment from ``deployments()``."""
        ...


class KubernetesTarget:
    """A ``Target`` over a ``Sink``; also ``SpecAwareTarget`` (it needs specs to render)."""

    def __init__(self, sink: Sink, options: KubernetesOptions) -> None:
        self._sink = sink
        self._options = options
        self._specs: dict[str, DeploymentSpec] = {}

    async def desire(self, desired: Sequence[DeploymentSpec]) -> None:
        """Remember the resolved specs (replicas, resources) for ``start`` and ``route``."""
        self._specs = {spec.name: spec for spec in desired}

    async def observe(self) -> list[ObservedDeployment]:
        """One instance per greenbutton Deployment in the namespace (or the folder)."""
        deployments = await asyncio.to_thread(self._sink.deployments)
        observed = []
        for manifest in deployments:
            meta = manifest.get("metadata", {})
            labels = meta.get("labels", {})
            name = meta.get("annotations", {}).get(DEPLOYMENT_ANNOTATION)
            version = labels.get("greenbutton.dev/version", "")
            if not name or not version.isdigit():
                continue  # not one of ours (or written by hand)
            state, reason = self._sink.state_of(manifest)
            ref = VersionRef(name, labels.get("greenbutton.dev/model", name), int(version))
            url = (f"http://{meta['name']}.{self._options.namespace}.svc."
                   f"{self._options.cluster_domain}:{SERVICE_PORT}")  # its Service's port
            observed.append(ObservedDeployment(ref, state, url, reason, handle=meta["name"]))
        return observed

    async def start(self, ref: VersionRef) -> None:
        """Apply the version's Deployment, Service, HPA and PDB (idempotent)."""
        manifests = self._render(self._spec(ref.name, ref.model), ref.version, VERSION_KINDS)
        await asyncio.to_thread(self._sink.apply, manifests)

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        """Delete the version's objects; the pods drain in their termination grace period."""
        spec = self._specs.get(ref.name) or DeploymentSpec(name=ref.name, model=ref.model,
                                                           version=ref.version)
        manifests = self._render(spec, ref.version, VERSION_KINDS)
        # the Deployment last: until it is gone, observe still shows the version to stop
        await asyncio.to_thread(self._sink.delete, manifests[::-1])

    async def route(self, name: str, backends: tuple[Backend, ...]) -> None:
        """Apply the Ingress(es) and NetworkPolicy for ``backends``' weights and mirrors."""
        spec = self._specs.get(name)
        shares = shares_by_version(backends)
        weighted = [(v, w) for v, w, _ in shares if w > 0]
        if spec is None or not weighted:
            return  # nothing ready: leave the last Ingress as it is
        primary = max(weighted, key=lambda vw: (vw[1], vw[0]))[0]
        routed = spec.model_copy(update={
            "version": primary,
            "split": tuple(RouteSpec(version=v, weight=w) for v, w in weighted)
            if len(weighted) > 1 else (),
            "shadow": tuple(ShadowSpec(version=v, percent=m) for v, _, m in shares if m > 0),
        })
        manifests = [m for m in render(routed, _endpoint(routed), self._options)
                     if m["kind"] in ROUTE_KINDS]
        await asyncio.to_thread(self._sink.apply, manifests)
        if len(weighted) == 1:  # a canary left from an A/B or a rollout would keep its share
            canary = {**manifests[0], "metadata": {**manifests[0]["metadata"],
                                                   "name": f"{name.lower()}-canary"}}
            await asyncio.to_thread(self._sink.delete, [canary])

    async def close(self) -> None:
        """Nothing to release: cluster objects and written files stay."""

    def _spec(self, name: str, model: str) -> DeploymentSpec:
        spec = self._specs.get(name)
        if spec is None or spec.model != model:
            raise NotReady(f"no desired spec for deployment {name!r} (model {model!r})")
        return spec

    def _render(self, spec: DeploymentSpec, version: int, kinds: tuple[str, ...]
                ) -> list[Manifest]:
        single = spec.model_copy(update={"version": version, "split": (), "shadow": ()})
        return [m for m in render(single, _endpoint(single), self._options)
                if m["kind"] in kinds]


def _endpoint(spec: DeploymentSpec) -> DeploySpec:
    """The user-level spec ``render`` reads replicas and resources from."""
    return DeploySpec(name=spec.name, model=spec.model, replicas=spec.replicas,
                      max_replicas=spec.max_replicas,
                      resources=ResourcesSpec(**dict(spec.resources)))
