"""``greenbutton doctor`` for a ``kubernetes://context/namespace`` target: the cluster answers
and the controller's identity may do what the Kubernetes target does (SelfSubjectAccessReview).
"""

from __future__ import annotations

from typing import Any

from .checks import Finding

# (API group, resource) the Kubernetes target manages in its namespace; leases: leader election
NEEDED = (
    ("apps", "deployments"), ("", "services"), ("networking.k8s.io", "ingresses"),
    ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"), ("monitoring.coreos.com", "servicemonitors"),
    ("coordination.k8s.io", "leases"),
)
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


def check_kubernetes(uri: str) -> list[Finding]:
    """API reachable for the target's context, and every verb the target needs allowed."""
    try:
        from kubernetes import client, config
    except ImportError:
        return [Finding("target", False, f"{uri}: pip install 'greenbutton[kubernetes]'")]
    _, _, rest = uri.partition("://")
    context, _, namespace = rest.partition("/")
    namespace = namespace or "default"
    try:
        try:
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                context=context or None)
        except config.ConfigException:
            if context:
                raise
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        version = client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as error:
        return [Finding("target", False, f"{uri}: cluster unreachable or not configured "
                        f"(kubeconfig context {context or '(current)'!r}): {_short(error)}")]
    denied = _denied(client.AuthorizationV1Api(api), namespace)
    findings = [Finding("target", True, f"{uri}: Kubernetes {version.git_version} answers")]
    if denied:
        findings.append(Finding("target", False, f"{uri}: not allowed in namespace "
                                f"{namespace!r}: {', '.join(denied)} (see deploy/platform/"
                                "rbac.yaml for the Role the controller needs)"))
    else:
        findings.append(Finding("target", True, f"{uri}: RBAC allows every action needed"))
    return findings


def _denied(authorization: Any, namespace: str) -> list[str]:
    from kubernetes import client

    denied = []
    for group, resource in NEEDED:
        for verb in VERBS:
            review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    group=group, resource=resource, verb=verb, namespace=namespace)))
            answer = authorization.create_self_subject_access_review(review, _request_timeout=5)
            if not answer.status.allowed:
                denied.append(f"{verb} {resource}")
    return denied


def _short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
