"""The environment of a serving container: what the image cannot know until it runs in a pod.

* ``Host`` names it answers (``GREENBUTTON_SERVING__ALLOWED_HOSTS``): its Service's DNS names
  (``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc``, ``<svc>.<ns>.svc.<cluster domain>``), the
  Ingress hosts, and the endpoint host the Ingress passes upstream; plus the pod's own
  addresses from the downward API (``status.podIPs``: kubelet's probes send them). Any other
  ``Host`` gets 400.
* Endpoint auth on, checked against the control plane at ``control_plane_url``.
* Workers per pod sized from the container's CPU (the serving process would otherwise read
  the cgroup quota, or see every core of the node when there is none).
* A shadow's share (``GREENBUTTON_SERVING__MIRROR_PERCENT``): ingress-nginx mirrors every
  request, the shadow's pods serve the spec's percent of them (``dataplane/mirror.py``).
* The shared payload store's URI from a Secret (PostgreSQL: every replica logs to one
  store, so feedback sent to any replica finds its request and drift sees every row).

Usage::

    container["env"] = serving_env(options, service="wine-v3", endpoint_host=...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifests import KubernetesOptions

EnvVar = dict[str, Any]


def service_hosts(service: str, namespace: str, cluster_domain: str) -> list[str]:
    """Every name a client in the cluster may reach ``service`` by (DNS search paths)."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{cluster_domain}"]


def endpoint_host(deployment: str, namespace: str) -> str:
    """The ``Host`` the Ingress passes to every version of ``deployment`` (ingress-nginx's
    ``upstream-vhost``): a canary or mirrored version sees the same name as the primary,
    whatever name the caller used. A label, not a DNS name."""
    return f"{deployment.lower()}.{namespace}.greenbutton.internal"


def serving_env(options: KubernetesOptions, *, service: str, deployment: str,
                workers: int, mirror_percent: float | None = None) -> list[EnvVar]:
    """The ``env`` list of one version's serving container (``mirror_percent``: a shadow's,
    which gets a copy of every request from the ingress and serves that share of them)."""
    ingress = [options.ingress_host] if options.ingress_host else []
    hosts = [*service_hosts(service, options.namespace, options.cluster_domain), *ingress,
             endpoint_host(deployment, options.namespace)]
    env: list[EnvVar] = [
        {"name": "GREENBUTTON_SERVING__POD_IPS",
         "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        {"name": "GREENBUTTON_SERVING__ALLOWED_HOSTS", "value": ",".join(hosts)},
        {"name": "GREENBUTTON_AUTH__IS_ENDPOINT_AUTH_ENABLED", "value": "true"},
        {"name": "GREENBUTTON_SERVER__URL", "value": options.control_plane_url},
        {"name": "GREENBUTTON_SERVING__WORKERS", "value": str(workers)},
    ]
    if mirror_percent is not None:
        env.append({"name": "GREENBUTTON_SERVING__MIRROR_PERCENT", "value": f"{mirror_percent:g}"})
    if options.payload_store_secret:
        env.append({"name": "GREENBUTTON_MONITORING__PAYLOAD_STORE_URI", "valueFrom": {
            "secretKeyRef": {"name": options.payload_store_secret, "key": "uri"}}})
    return env
