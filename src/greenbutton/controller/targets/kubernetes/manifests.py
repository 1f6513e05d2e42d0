"""Kubernetes manifests for one deployment, as plain dicts (YAML/JSON-ready).

Per routed or shadow version: a Deployment (probes on /health/live and /health/ready,
resources, non-root read-only security context, token secret by reference), a Service, an
HorizontalPodAutoscaler and a PodDisruptionBudget. Per deployment: an Ingress at
``/endpoints/<name>/`` (ingress-nginx; a second weighted version becomes a canary Ingress,
a shadow a ``mirror-target``), a NetworkPolicy, and a ServiceMonitor when the Prometheus
operator is present. Usage::

    manifests = render(resolved_spec, endpoint_spec, KubernetesOptions(namespace="ml"))
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ....config import Settings
from ...reconcile import DeploymentSpec
from ...specs import DeploySpec
from ..worker_memory import as_quantity, memory_limit_bytes
from .serving_env import endpoint_host, serving_env

Manifest = dict[str, Any]
PORT = 8080
"""The serving container's port (named ``http``)."""
SERVICE_PORT = 80
"""Each version's Service listens here and forwards to ``PORT``."""
DEPLOYMENT_ANNOTATION = "greenbutton.dev/deployment"
"""On each Deployment: the greenbutton deployment name (labels are lower-cased)."""
_RUN_AS = 10001


class KubernetesOptions(BaseModel):
    """Cluster-specific choices that are not part of the user's deployment spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    namespace: str = "default"
    image_prefix: str = "greenbutton/"
    """Images are ``<prefix><model>:<version>`` (built from ``greenbutton`` Docker contexts)."""
    ingress_class: str = "nginx"
    ingress_host: str | None = None
    ingress_namespace: str = "ingress-nginx"
    monitoring_namespace: str = "monitoring"
    has_prometheus_operator: bool = False
    token_secret: str | None = "greenbutton-serving-tokens"
    """Secret whose keys become the serving process' environment (optional at runtime)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain (Service names ``<svc>.<ns>.svc.<domain>`` are accepted)."""
    control_plane_url: str = "http://greenbutton.greenbutton.svc:8600"
    """Where serving pods check callers' tokens (the control plane's Service)."""
    prometheus_token_secret: str = "greenbutton-prometheus"
    """Secret (key ``token``) with the API token the ServiceMonitor scrapes ``/metrics``
    with (a token holding ``invoke`` on the served models)."""
    payload_store_secret: str | None = "greenbutton-payloads"
    """Secret (key ``uri``) with the payload store's URI shared by every pod; None: each pod
    keeps its own SQLite file."""
    worker_rss_bytes: dict[int, int] = {}
    """Measured peak memory of one worker, per version (``greenbutton build``); a version
    found here gets its memory limit from it (see ``worker_memory.memory_limit_bytes``)."""
    payload_buffer_bytes: int = 64 * 1024 * 1024
    """Each worker's payload buffer bound (``monitoring.buffer_max_bytes``)."""

    @classmethod
    def from_settings(cls, settings: Settings, namespace: str) -> KubernetesOptions:
        """The options ``settings.kubernetes`` describes, for objects in ``namespace``."""
        k = settings.kubernetes
        return cls(namespace=namespace, image_prefix=k.image_prefix,
                   ingress_class=k.ingress_class, ingress_host=k.ingress_host or None,
                   has_prometheus_operator=k.has_prometheus_operator,
                   token_secret=k.env_secret or None, cluster_domain=k.cluster_domain,
                   control_plane_url=k.control_plane_url or settings.server.url,
                   payload_store_secret=k.payload_store_secret or None,
                   prometheus_token_secret=k.prometheus_token_secret,
                   payload_buffer_bytes=settings.monitoring.buffer_max_bytes)


def render(spec: DeploymentSpec, endpoint: DeploySpec, options: KubernetesOptions
           ) -> list[Manifest]:
    """Every manifest of ``spec`` (already resolved to versions), in apply order."""
    versions = [r.version for r in spec.routes] + sorted(spec.mirrors)
    manifests: list[Manifest] = []
    for version in versions:
        manifests += [_deployment(spec, endpoint, version, options),
                      _service(spec, version, options),
                      _hpa(spec, endpoint, version, options),
                      _pdb(spec, version, options)]
    manifests += _ingresses(spec, options)
    manifests.append(_network_policy(spec, options))
    if options.has_prometheus_operator:
        manifests.append(_service_monitor(spec, options))
    return manifests


def _object_name(spec: DeploymentSpec, version: int) -> str:
    return f"{spec.name}-v{version}".lower().replace("_", "-").replace(".", "-")[:63]


def _labels(spec: DeploymentSpec, version: int | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "greenbutton-serving",
              "app.kubernetes.io/instance": spec.name.lower(),
              "app.kubernetes.io/managed-by": "greenbutton",
              "greenbutton.dev/model": spec.model}
    if version is not None:
        labels["greenbutton.dev/version"] = str(version)
    return labels


def _meta(name: str, options: KubernetesOptions, labels: dict[str, str],
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _resources(endpoint: DeploySpec, version: int,
               options: KubernetesOptions) -> dict[str, dict[str, str]]:
    """The spec's requests and limits; with a measured worker size, memory sized from it
    (limit and request alike: a pod is not scheduled where it cannot grow to its limit)."""
    r = endpoint.resources
    requests = {k: v for k, v in (("cpu", r.cpu_request), ("memory", r.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", r.cpu_limit), ("memory", r.memory_limit)) if v}
    rss = options.worker_rss_bytes.get(version)
    if rss is not None:
        memory = as_quantity(memory_limit_bytes(rss, _workers(endpoint),
                                                options.payload_buffer_bytes))
        requests["memory"] = limits["memory"] = memory
    return {"requests": requests, "limits": limits}


def _cpus(quantity: str) -> float:
    """``"250m"`` -> 0.25, ``"2"`` -> 2.0 (a validated Kubernetes CPU quantity)."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _workers(endpoint: DeploySpec) -> int:
    """Workers per pod: the CPU limit (else request) in whole CPUs, at least 1. Set
    explicitly: without a limit the container would see every core of its node."""
    r = endpoint.resources
    cpus = r.cpu_limit or r.cpu_request
    return max(1, int(_cpus(cpus))) if cpus else 1


def _deployment(spec: DeploymentSpec, endpoint: DeploySpec, version: int,
                options: KubernetesOptions) -> Manifest:
    name, labels = _object_name(spec, version), _labels(spec, version)
    probe = {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSeconds": 5,
             "timeoutSeconds": 2, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": "serving",
        "image": f"{options.image_prefix}{spec.model.lower()}:{version}",
        "args": ["--host", "0.0.0.0", "--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/health/live", "port": "http"},
                          "periodSeconds": 10},
        "startupProbe": {**probe, "failureThreshold": 60, "periodSeconds": 2},
        "resources": _resources(endpoint, version, options),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": _RUN_AS,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    routed = {r.version for r in spec.routes}
    container["env"] = serving_env(options, service=name, deployment=spec.name,
                                   workers=_workers(endpoint),
                                   mirror_percent=None if version in routed
                                   else spec.mirrors.get(version))
    if options.token_secret:
        container["envFrom"] = [{"secretRef": {"name": options.token_secret, "optional": True}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, options, labels, {DEPLOYMENT_ANNOTATION: spec.name}),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 40,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": _RUN_AS,
                                        "fsGroup": _RUN_AS,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def _service(spec: DeploymentSpec, version: int, options: KubernetesOptions) -> Manifest:
    labels = _labels(spec, version)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(_object_name(spec, version), options, labels),
            "spec": {"selector": labels, "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                 "protocol": "TCP"}]}}


def _hpa(spec: DeploymentSpec, endpoint: DeploySpec, version: int,
         options: KubernetesOptions) -> Manifest:
    name = _object_name(spec, version)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, options, _labels(spec, version)),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": spec.replicas,
                "maxReplicas": endpoint.max_replicas or max(2, spec.replicas * 2),
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
            }}


def _pdb(spec: DeploymentSpec, version: int, options: KubernetesOptions) -> Manifest:
    labels = _labels(spec, version)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(_object_name(spec, version), options, labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}


def _ingress(spec: DeploymentSpec, name: str, version: int, options: KubernetesOptions,
             annotations: dict[str, str]) -> Manifest:
    path = f"/endpoints/{spec.name}(/|$)(.*)"
    rule: dict[str, Any] = {"http": {"paths": [{
        "path": path, "pathType": "ImplementationSpecific",
        "backend": {"service": {"name": _object_name(spec, version),
                                "port": {"name": "http"}}}}]}}
    if options.ingress_host:
        rule["host"] = options.ingress_host
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": _meta(name, options, _labels(spec), {
                "nginx.ingress.kubernetes.io/use-regex": "true",
                # the Host every version accepts, canaries and mirrors included
                "nginx.ingress.kubernetes.io/upstream-vhost":
                    endpoint_host(spec.name, options.namespace),
                "nginx.ingress.kubernetes.io/rewrite-target": "/$2", **annotations}),
            "spec": {"ingressClassName": options.ingress_class, "rules": [rule]}}


def _ingresses(spec: DeploymentSpec, options: KubernetesOptions) -> list[Manifest]:
    """The primary version's Ingress, plus one canary Ingress for a second weighted version
    (ingress-nginx allows one canary per path)."""
    routes = sorted(spec.routes, key=lambda r: (-r.weight, r.version))
    total = sum(r.weight for r in routes)
    main: dict[str, str] = {}
    for version, percent in sorted(spec.mirrors.items())[:1]:
        host = f"{_object_name(spec, version)}.{options.namespace}.svc.{options.cluster_domain}"
        main["nginx.ingress.kubernetes.io/mirror-target"] = f"http://{host}$request_uri"
        main["nginx.ingress.kubernetes.io/mirror-host"] = endpoint_host(spec.name,
                                                                         options.namespace)
        main["greenbutton.dev/mirror-percent"] = str(percent)
    manifests = [_ingress(spec, spec.name.lower(), routes[0].version, options, main)]
    if len(routes) > 1:
        canary = {"nginx.ingress.kubernetes.io/canary": "true",
                  "nginx.ingress.kubernetes.io/canary-weight": str(routes[1].weight),
                  "nginx.ingress.kubernetes.io/canary-weight-total": str(total)}
        manifests.append(_ingress(spec, f"{spec.name.lower()}-canary", routes[1].version,
                                  options, canary))
    return manifests


def _network_policy(spec: DeploymentSpec, options: KubernetesOptions) -> Manifest:
    """Only the ingress controller and the monitoring namespace may reach the pods."""
    sources = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
               for ns in (options.ingress_namespace, options.monitoring_namespace)]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(spec.name.lower(), options, _labels(spec)),
            "spec": {"podSelector": {"matchLabels": _labels(spec)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": sources, "ports": [{"port": "http",
                                                              "protocol": "TCP"}]}]}}


def _service_monitor(spec: DeploymentSpec, options: KubernetesOptions) -> Manifest:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": _meta(spec.name.lower(), options, _labels(spec)),
            "spec": {"selector": {"matchLabels": _labels(spec)},
                     "endpoints": [{
                         "port": "http", "path": "/metrics", "interval": "15s",
                         # /metrics needs a token holding 'invoke' (endpoint auth is on)
                         "authorization": {"type": "Bearer", "credentials": {
                             "name": options.prometheus_token_secret, "key": "token"}}}]}}
