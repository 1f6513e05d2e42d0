"""Where the Kubernetes target's manifests go: a cluster (``ClusterSink``) or a folder
(``DirSink``, for GitOps tools such as Argo CD or Flux).

``ClusterSink`` talks to the API server with the official ``kubernetes`` client's
``ApiClient`` (extra ``greenbutton[kubernetes]``; kubeconfig and context as ``kubectl`` reads
them): server-side apply is ``PATCH`` with ``application/apply-patch+yaml`` on the object's
path (field manager ``greenbutton``, ``force=true``), observe lists Deployments labelled
``app.kubernetes.io/managed-by=greenbutton``. Paths are built from a fixed table, so no API
discovery is needed. Usage::

    ClusterSink("prod", "ml").apply(manifests)
    DirSink(Path("gitops/ml")).apply(manifests)     # one YAML file per object
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from ....errors import GreenbuttonError, NotReady
from ...reconcile import InstanceState
from .apply import FIELD_MANAGER, api_client, write_manifests
from .manifests import Manifest

PLURALS = {"Deployment": "deployments", "Service": "services",
           "HorizontalPodAutoscaler": "horizontalpodautoscalers",
           "PodDisruptionBudget": "poddisruptionbudgets", "Ingress": "ingresses",
           "NetworkPolicy": "networkpolicies", "ServiceMonitor": "servicemonitors"}
MANAGED = "app.kubernetes.io/managed-by=greenbutton"


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/ml/deployments/wine-v3`` (core kinds under ``/api/v1``)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class ClusterSink:
    """A namespace of a cluster; the client is created on first use."""

    def __init__(self, context: str | None, namespace: str,
                 kubeconfig: Path | None = None) -> None:
        self.namespace = namespace
        self._context = context
        self._kubeconfig = kubeconfig
        self._api: Any = None

    def apply(self, manifests: Sequence[Manifest]) -> None:
        """Server-side apply each object, in order."""
        for manifest in manifests:
            meta = manifest["metadata"]
            path = object_path(manifest["apiVersion"], manifest["kind"], self.namespace,
                               meta["name"])
            self._call("PATCH", path, body=manifest,  # sent as JSON, which is YAML
                       query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                       content_type="application/apply-patch+yaml")

    def delete(self, manifests: Sequence[Manifest]) -> None:
        """Delete each object (foreground: pods go first); 404 is fine."""
        for manifest in manifests:
            path = object_path(manifest["apiVersion"], manifest["kind"], self.namespace,
                               manifest["metadata"]["name"])
            self._call("DELETE", path, missing_ok=True,
                       body={"propagationPolicy": "Foreground"},
                       content_type="application/json")

    def deployments(self) -> list[Manifest]:
        """greenbutton's Deployments in the namespace, with their status."""
        path = object_path("apps/v1", "Deployment", self.namespace)
        listing = self._call("GET", path, query=[("labelSelector", MANAGED)])
        items: list[Manifest] = (listing or {}).get("items", [])
        return items

    def state_of(self, deployment: Manifest) -> tuple[InstanceState, str | None]:
        """Ready once ``readyReplicas`` reaches ``replicas`` for the current generation;
        failed when the Deployment's progress deadline passed."""
        status = deployment.get("status") or {}
        for condition in status.get("conditions") or ():
            if condition.get("type") == "Progressing" and condition.get("status") == "False":
                return InstanceState.FAILED, condition.get("message") or condition.get("reason")
        wanted = (deployment.get("spec") or {}).get("replicas", 1)
        generation = deployment.get("metadata", {}).get("generation", 0)
        is_current = status.get("observedGeneration", 0) >= generation
        if is_current and (status.get("readyReplicas") or 0) >= max(1, wanted):
            return InstanceState.READY, None
        return InstanceState.STARTING, None

    def _client(self) -> Any:
        if self._api is None:
            self._api = api_client(self._context, self._kubeconfig)
        return self._api

    def _call(self, method: str, path: str, *, body: Manifest | None = None,
              query: list[tuple[str, str]] | None = None, content_type: str | None = None,
              missing_ok: bool = False) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        api = self._client()
        try:
            request = api.param_serialize(method, path, query_params=query or [],
                                          header_params=headers, body=body,
                                          auth_settings=["BearerToken"])
            response = api.call_api(*request, _request_timeout=10)
            data = response.read()
        except ApiException as error:
            raise GreenbuttonError(f"{method} {path} failed: {error.reason}") from error
        except urllib3.exceptions.HTTPError as error:
            raise NotReady(f"API server unreachable: {error}") from error
        if missing_ok and response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise GreenbuttonError(f"{method} {path} failed: {response.status} "
                                   f"{response.reason}: {data[:500]!r}")
        return json.loads(data) if data else None


class DirSink:
    """A folder of ``<kind>-<name>.yaml`` files; what is written counts as deployed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def apply(self, manifests: Sequence[Manifest]) -> None:
        """Write (or rewrite) one file per object."""
        for manifest in manifests:
            write_manifests([manifest], self.directory, _file_stem(manifest))

    def delete(self, manifests: Sequence[Manifest]) -> None:
        """Remove the objects' files."""
        for manifest in manifests:
            (self.directory / f"{_file_stem(manifest)}.yaml").unlink(missing_ok=True)

    def deployments(self) -> list[Manifest]:
        """The Deployments written so far (a restart reads them back)."""
        found = []
        for path in sorted(self.directory.glob("deployment-*.yaml")):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # deleted meanwhile (a stop running in another thread)
            found += [d for d in yaml.safe_load_all(text)
                      if isinstance(d, dict) and d.get("kind") == "Deployment"]
        return found

    def state_of(self, deployment: Manifest) -> tuple[InstanceState, str | None]:
        """Always ``written``: applying is the GitOps tool's job."""
        return InstanceState.WRITTEN, None


def _file_stem(manifest: Manifest) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}"
