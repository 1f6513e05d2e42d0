"""``greenbutton deploy``: build a spec from the command line, store it or write manifests."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from ..client import ControlPlaneClient
from ..config import Settings
from ..controller.specs import DeploySpec, parse_route, parse_shadow, resolve
from ..errors import InvalidInput
from ..store.protocol import Stage


def spec_from_args(args: argparse.Namespace) -> DeploySpec:
    """The ``DeploySpec`` the flags describe (``InvalidInput`` with the reason if not)."""
    try:
        fields: dict[str, Any] = {"name": args.name, "model": args.model or args.name,
                                  "replicas": args.replicas, "max_replicas": args.max_replicas,
                                  "sticky_header": args.sticky_header, "target": args.target}
        if args.route:
            fields["routes"] = tuple(parse_route(text) for text in args.route)
        fields["shadow"] = tuple(parse_shadow(text) for text in args.shadow)
        return DeploySpec(**fields)
    except (ValueError, ValidationError) as error:
        raise InvalidInput(str(error)) from None


def deploy(client: ControlPlaneClient, args: argparse.Namespace,
           settings: Settings) -> dict[str, Any] | None:
    """Store the spec through the control plane, or write Kubernetes manifests to a folder;
    returns the request when, under four-eyes, someone else must approve it first."""
    spec = spec_from_args(args)
    if args.write_manifests is not None:
        model = next((m for m in client.models() if m["name"] == spec.model), None)
        _write(spec, model or {}, args, settings)
        return None
    saved = client.put_spec(spec.name, spec.model_dump(mode="json", exclude={"name"}),
                            actor=args.actor)
    if "request" in saved:
        return dict(saved["request"])
    routes = ", ".join(f"{r['to']}={r['weight']}" for r in saved["spec"]["routes"])
    shadow = ", ".join(f"{s['to']}={s['percent']}%" for s in saved["spec"]["shadow"])
    print(f"{spec.name}: routes {routes}" + (f"; shadow {shadow}" if shadow else "")
          + f" (revision {saved['revision']})")
    return None


def _write(spec: DeploySpec, model: dict[str, Any], args: argparse.Namespace,
           settings: Settings) -> None:
    from ..controller.targets.kubernetes.apply import write_manifests
    from ..controller.targets.kubernetes.manifests import KubernetesOptions, render

    stages = {stage: model[key] for stage, key in
              ((Stage.PRODUCTION, "production"), (Stage.STAGING, "staging")) if model.get(key)}
    resolved = resolve(spec, stages)
    if resolved is None:
        raise InvalidInput(f"no route of {spec.name!r} resolves to a version of {spec.model!r}")
    manifests = render(resolved, spec, KubernetesOptions.from_settings(settings,
                                                                       args.namespace))
    path = write_manifests(manifests, args.write_manifests, spec.name)
    print(f"{spec.name}: {len(manifests)} manifests written to {path}")
