"""``greenbutton build`` (a version's Docker context, and its image when a Docker engine is
here) and ``greenbutton manifests`` (a deployment's Kubernetes objects, for GitOps)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client import ControlPlaneClient
from ..config import Settings
from ..errors import InvalidInput, NotReady
from ..store.protocol import Stage
from .commands import Commands


def add_commands(sub: Commands) -> None:
    """Register ``build`` and ``manifests``."""
    build_cmd = sub.add_parser(
        "build", help="write a model version's Docker build context (and build the image "
        "when a Docker engine is reachable)")
    build_cmd.add_argument("model", help="registered model name")
    build_cmd.add_argument("version", help="version number")
    build_cmd.add_argument("--out", type=Path, help="folder to write (default build/MODEL-VERSION)")
    build_cmd.add_argument("--base-image", metavar="REF",
                           help="FROM image, e.g. pinned by digest: "
                           "python:3.11-slim@sha256:... (default python:X.Y-slim)")
    build_cmd.add_argument("--no-image", action="store_true",
                           help="only write the context, even where Docker is available")
    build_cmd.add_argument("--no-measure", action="store_true",
                           help="do not start the model here to measure one worker's memory "
                           "(the manifests then keep the deployment's memory limit)")
    manifests_cmd = sub.add_parser(
        "manifests", help="write a deployment's Kubernetes manifests (GREENBUTTON_KUBERNETES__* "
        "settings; see docs/deployment.md)")
    manifests_cmd.add_argument("name", help="deployment name")
    manifests_cmd.add_argument("--out", type=Path, default=Path("k8s"),
                               help="folder (default k8s/); writes NAME.yaml")
    manifests_cmd.add_argument("--namespace", default="default", help="namespace of the objects")


def build(settings: Settings, args: argparse.Namespace) -> int:
    """Write the context; build and tag the image if a Docker engine answers."""
    from ..controller.targets.docker import docker_build, write_build_context
    from ..registry.tracking import open_mlflow

    if not str(args.version).isdigit():
        raise InvalidInput(f"VERSION must be a number, got {args.version!r}", field="version")
    open_mlflow(settings.mlflow)  # MLflow's database created first, one process at a time
    out = args.out or Path("build") / f"{args.model}-{args.version}"
    context = write_build_context(f"models:/{args.model}/{args.version}", out, settings,
                                  image_prefix=settings.kubernetes.image_prefix,
                                  base_image=args.base_image)
    print(f"{context.model} v{context.version}: Docker build context written to {context.path}")
    if not args.no_measure:
        _measure(settings, context.path, context.model, context.version)
    if args.no_image:
        print(f"build it with: docker build -t {context.tag} {context.path}")
        return 0
    try:
        docker_build(context.path, context.tag)
    except NotReady as error:
        print(f"{error.message}: docker build -t {context.tag} {context.path}")
        return 0
    print(f"image {context.tag} built")
    return 0


def _measure(settings: Settings, context: Path, name: str, version: str | None) -> None:
    """Measure one worker of the context's model; keep it as the version's MLflow tag."""
    from ..controller.targets.worker_memory import RSS_TAG, measure_worker_rss
    from ..registry.tracking import open_mlflow

    try:
        rss = measure_worker_rss(context, name, version)
    except NotReady as error:
        print(f"worker memory not measured: {error.message}")
        return
    if version is not None:
        open_mlflow(settings.mlflow).set_model_version_tag(name, version, RSS_TAG, str(rss))
    print(f"one worker holds {rss / 2**20:.0f} MiB once ready (tag {RSS_TAG}; "
          "'greenbutton manifests' sizes memory limits from it)")


def _measured(settings: Settings, model: str, versions: list[int]) -> dict[int, int]:
    """Each version's measured worker memory, where ``greenbutton build`` measured it."""
    from ..controller.targets.worker_memory import RSS_TAG
    from ..registry.tracking import open_mlflow

    client = open_mlflow(settings.mlflow)
    found: dict[int, int] = {}
    for version in versions:
        tag = client.get_model_version(model, str(version)).tags.get(RSS_TAG, "")
        if tag.isdigit():
            found[version] = int(tag)
    return found


def manifests(client: ControlPlaneClient, settings: Settings, args: argparse.Namespace) -> int:
    """Resolve the stored spec of ``args.name`` to versions and write its manifests."""
    from ..controller.specs import DeploySpec, resolve
    from ..controller.targets.kubernetes.apply import write_manifests
    from ..controller.targets.kubernetes.manifests import KubernetesOptions, render

    spec = DeploySpec.model_validate({"name": args.name, **client.get_spec(args.name)["spec"]})
    model = next((m for m in client.models() if m["name"] == spec.model), {})
    stages = {stage: model[key] for stage, key in
              ((Stage.PRODUCTION, "production"), (Stage.STAGING, "staging")) if model.get(key)}
    resolved = resolve(spec, stages)
    if resolved is None:
        raise InvalidInput(f"no route of {spec.name!r} resolves to a version of {spec.model!r}")
    versions = [r.version for r in resolved.routes] + sorted(resolved.mirrors)
    options = KubernetesOptions.from_settings(settings, args.namespace).model_copy(
        update={"worker_rss_bytes": _measured(settings, spec.model, versions)})
    written = render(resolved, spec, options)
    path = write_manifests(written, args.out, spec.name)
    print(f"{spec.name}: {len(written)} manifests written to {path}")
    return 0
