"""Deployment specs as users write them, and their resolution to concrete versions.

A route or shadow names a version number or a stage alias: ``production``, ``staging``, or
``challenger`` (a synonym of ``staging``: in an A/B test the Staging version is the
challenger). Usage::

    spec = DeploySpec(name="wine", model="wine",
                        routes=(RouteRule(to="production", weight=80),
                                RouteRule(to="challenger", weight=20)),
                        shadow=(ShadowRule(to="staging", percent=5),))
    resolve(spec, {Stage.PRODUCTION: 3, Stage.STAGING: 4})   # -> DeploymentSpec(...)

Routes whose alias has no version right now are left out (the rest keep their weights), so
``production=80, challenger=20`` serves production alone until a challenger is staged. A
version named by number is served only while it is the Production or Staging version: traffic
reaches a version through the governed lifecycle, never around it (``check_routable`` says so
when a spec is written; ``resolve`` keeps it when the lifecycle moves on).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    model_validator,
)

from ..errors import InvalidInput
from ..governance.approvals import SpecChange
from ..store.protocol import Stage, VersionState
from .reconcile import DeploymentSpec, Name, RouteSpec, ShadowSpec

ALIASES: dict[str, Stage] = {
    "production": Stage.PRODUCTION,
    "staging": Stage.STAGING,
    "challenger": Stage.STAGING,
}
_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")


def _check_ref(ref: str | int) -> str | int:
    if isinstance(ref, int) or ref.isdigit():
        if int(ref) < 1:
            raise ValueError("a version number is >= 1")
        return int(ref)
    if ref.lower() not in ALIASES:
        raise ValueError(f"route to a version number or one of {sorted(ALIASES)}, not {ref!r}")
    return ref.lower()


def _check_header(header: str | None) -> str | None:
    if header is not None and not _HEADER.fullmatch(header):
        raise ValueError("sticky_header must be an HTTP header name")
    return header.lower() if header else None


def _check_quantity(value: str | None) -> str | None:
    if value is not None and not _QUANTITY.fullmatch(value):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return value


VersionRefText = Annotated[str | int, AfterValidator(_check_ref)]
Quantity = Annotated[str | None, AfterValidator(_check_quantity)]


class RouteRule(BaseModel):
    """A share of live traffic for a version or a stage alias."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    to: VersionRefText
    weight: Annotated[int, Field(ge=0, le=100)]


class ShadowRule(BaseModel):
    """A mirrored copy of ``percent`` % of requests for a version or alias."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    to: VersionRefText = "staging"
    percent: Annotated[int, Field(ge=1, le=100)]


class ResourcesSpec(BaseModel):
    """Requests and limits per serving replica (Kubernetes target)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cpu_request: Quantity = "250m"
    memory_request: Quantity = "512Mi"
    cpu_limit: Quantity = None
    memory_limit: Quantity = "1Gi"


class DeploySpec(BaseModel):
    """What a user asks for one deployment (stored; ``greenbutton deploy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    model: Name
    routes: tuple[RouteRule, ...] = (RouteRule(to="production", weight=100),)
    shadow: tuple[ShadowRule, ...] = ()
    sticky_header: Annotated[str | None, AfterValidator(_check_header)] = None
    replicas: PositiveInt | None = Field(default=None, le=64)
    """None: the controller's default (``controller.replicas``)."""
    max_replicas: PositiveInt | None = Field(default=None, le=256)
    resources: ResourcesSpec = ResourcesSpec()
    target: str | None = None
    """Deploy target URI; None: the controller's own (``controller.target_uri``)."""

    @model_validator(mode="after")
    def _check_routes(self) -> Self:
        if not self.routes or sum(r.weight for r in self.routes) <= 0:
            raise ValueError("at least one route needs a positive weight")
        if len({r.to for r in self.routes}) != len(self.routes):
            raise ValueError("each version or alias may be routed once")
        if self.max_replicas is not None and self.max_replicas < (self.replicas or 1):
            raise ValueError("max_replicas must be >= replicas")
        return self


def default_spec(model: str) -> DeploySpec:
    """The spec of a model that has none stored: its Production version takes all traffic."""
    return DeploySpec(name=model, model=model)


def resolve(spec: DeploySpec, stages: Mapping[Stage, int], *,
            default_replicas: int = 1) -> DeploymentSpec | None:
    """Concrete versions for ``spec`` given the model's stage -> version; None if no route
    resolves (nothing to serve). ``default_replicas``: for a spec that does not say."""
    weights: dict[int, int] = {}
    for rule in spec.routes:
        version = _version_of(rule.to, stages)
        if version is not None and rule.weight > 0:
            weights[version] = weights.get(version, 0) + rule.weight
    if not weights:
        return None
    mirrors: dict[int, int] = {}
    for shadow in spec.shadow:
        version = _version_of(shadow.to, stages)
        if version is not None and version not in weights:
            mirrors[version] = max(mirrors.get(version, 0), shadow.percent)
    primary = max(weights, key=lambda v: (weights[v], v))
    split = tuple(RouteSpec(version=v, weight=w) for v, w in sorted(weights.items()))
    return DeploymentSpec(
        name=spec.name,
        model=spec.model,
        version=primary,
        split=split if len(split) > 1 else (),
        shadow=tuple(ShadowSpec(version=v, percent=p) for v, p in sorted(mirrors.items())),
        sticky_header=spec.sticky_header,
        replicas=spec.replicas or default_replicas,
        max_replicas=spec.max_replicas,
        resources=tuple(spec.resources.model_dump().items()),
    )


def _version_of(ref: str | int, stages: Mapping[Stage, int]) -> int | None:
    if isinstance(ref, int):
        return ref if ref in stages.values() else None
    return stages.get(ALIASES[ref])


ROUTABLE = (Stage.PRODUCTION, Stage.STAGING)


def check_routable(spec: DeploySpec, states: Sequence[VersionState]) -> None:
    """``InvalidInput`` naming the first version the spec routes or mirrors to by number that
    is not its model's Production or Staging version now."""
    stages = {s.version: s.stage for s in states if s.model == spec.model}
    for field, rules in (("spec.routes", spec.routes), ("spec.shadow", spec.shadow)):
        for rule in rules:
            if not isinstance(rule.to, int):
                continue
            stage = stages.get(rule.to, Stage.NONE)
            if stage not in ROUTABLE:
                raise InvalidInput(
                    f"version {rule.to} of {spec.model!r} is {stage}, not in Production or "
                    "Staging (never promoted, awaiting approval, archived or not registered): "
                    "route to production, staging or challenger, or promote it first",
                    field=field)


def parse_route(text: str) -> RouteRule:
    """``production=80`` / ``challenger=20`` / ``3=50`` (CLI ``--route``)."""
    to, sep, weight = text.partition("=")
    if not sep or not weight.strip().isdigit():
        raise ValueError(f"--route wants TARGET=WEIGHT (e.g. production=80), not {text!r}")
    return RouteRule(to=to.strip(), weight=int(weight))


def parse_shadow(text: str) -> ShadowRule:
    """``5`` (5 % mirrored to the staging/challenger version) or ``TARGET=PERCENT``."""
    to, sep, percent = text.rpartition("=")
    if not percent.strip().isdigit():
        raise ValueError(f"--shadow wants PERCENT or TARGET=PERCENT (e.g. 5), not {text!r}")
    return ShadowRule(to=to.strip() if sep else "staging", percent=int(percent))


def check_spec_change(change: SpecChange, states: Sequence[VersionState]) -> None:
    """A spec about to be stored is valid and routes only within the governed lifecycle
    (``states``: its model's versions); ``InvalidInput`` otherwise."""
    if change.spec is None:
        return
    try:
        spec = DeploySpec.model_validate({**change.spec, "name": change.name})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidInput(f"spec.{field}: {first['msg']}", field=f"spec.{field}") from None
    check_routable(spec, states)
