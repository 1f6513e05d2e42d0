"""Desired and observed deployment state, and the pure function that plans the difference.

Usage::

    actions = plan(desired, target_observed, routes.snapshot(), backoff=RestartBackoff(1, 60))
    # -> [StartVersion(...)] now, [SwitchTraffic(...), StopVersion(...)] once v2 is ready

Rollouts are blue-green: a new version is started next to the old one (one replica first, the
others once it is ready), traffic switches once every routed version has a ready replica (the
others join as they become ready), and the old one is stopped (drained) only once the new one
is whole.
The plan keeps that promise across a control-plane restart, when the route table starts empty:
it routes to whatever is observed ready (the old version, still loading v2 or not), and stops
no instance it has not checked yet while nothing else serves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    """``name`` if it is safe in a URL path, a file name and a command line, else ValueError."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid name {name!r}: use letters, digits, '.', '_', '-'")
    return name


Name = Annotated[str, AfterValidator(check_name)]


class RouteSpec(BaseModel):
    """One version receiving a share of a deployment's traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: PositiveInt
    weight: Annotated[int, Field(ge=0, le=100)] = 100


class ShadowSpec(BaseModel):
    """One version receiving a mirrored copy of ``percent`` % of requests (answers discarded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: PositiveInt
    percent: Annotated[int, Field(ge=1, le=100)]


class DeploymentSpec(BaseModel):
    """Resolved desired state of one deployment: concrete versions, weights and mirrors.

    ``version`` is the primary version (shown in status); ``split`` lists weighted routes
    (empty: ``version`` takes all traffic); ``shadow`` lists mirrored versions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    model: Name
    version: PositiveInt
    split: tuple[RouteSpec, ...] = ()
    shadow: tuple[ShadowSpec, ...] = ()
    sticky_header: str | None = None
    replicas: PositiveInt = Field(default=1, le=64)
    """Serving processes (or pods) per routed version; shadows run one."""
    max_replicas: PositiveInt | None = None
    resources: tuple[tuple[str, str | None], ...] = ()
    """Kubernetes requests/limits as ``(ResourcesSpec field, quantity)`` pairs."""

    @property
    def routes(self) -> tuple[RouteSpec, ...]:
        """Where traffic goes; one route of weight 100 unless ``split`` is given."""
        return self.split or (RouteSpec(version=self.version, weight=100),)

    @property
    def mirrors(self) -> dict[int, int]:
        """Shadow version -> percent mirrored, minus versions that are routed anyway."""
        routed = {route.version for route in self.routes}
        return {s.version: s.percent for s in self.shadow if s.version not in routed}


@dataclass(frozen=True)
class VersionRef:
    """One replica of a model version running under one deployment name."""

    name: str
    model: str
    version: int
    replica: int = 0


class InstanceState(StrEnum):
    """Lifecycle of one running version as a target reports it."""

    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    WRITTEN = "written"
    """Handed to another system (manifests in a GitOps folder): routed as if ready."""


@dataclass(frozen=True)
class ObservedDeployment:
    """One version of a deployment as the target sees it now."""

    ref: VersionRef
    state: InstanceState
    url: str | None = None
    reason: str | None = None
    handle: str | None = None
    """Target-specific id (a pid for local processes)."""
    failures: int = 0
    """Consecutive failures of this version (reset once it stays ready)."""
    state_age_s: float = 0.0
    """Seconds since the instance entered ``state``."""
    restarts: int = 0
    """Times it was started again after a failure (never reset)."""
    last_error: str | None = None
    """Why it last failed, even once it is ready again."""


@dataclass(frozen=True)
class Backend:
    """One routed version: where the gateway sends a ``weight`` share of requests.

    A backend with ``mirror_percent`` > 0 (and weight 0) is a shadow: it gets copies.
    """

    version: int
    url: str
    weight: float = 100
    """A replica of a version routed with weight W among N replicas weighs W / N."""
    mirror_percent: int = 0


@dataclass(frozen=True)
class RestartBackoff:
    """Exponential delay before restarting a failed version."""

    initial_s: float = 1.0
    max_s: float = 60.0

    def delay_s(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure."""
        return min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True)
class StartVersion:
    """Start (or restart after a failure) one version."""

    ref: VersionRef


@dataclass(frozen=True)
class SwitchTraffic:
    """Point a deployment's route at these backends (none: known but not ready, 503)."""

    name: str
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class RemoveRoute:
    """Forget a deployment's route (requests get 404)."""

    name: str


@dataclass(frozen=True)
class StopVersion:
    """Drain the backend at ``url`` (if any), then stop the version."""

    ref: VersionRef
    url: str | None


Action = StartVersion | SwitchTraffic | RemoveRoute | StopVersion


def action_deployment(action: Action) -> str:
    """The deployment name an action belongs to."""
    return action.name if isinstance(action, SwitchTraffic | RemoveRoute) else action.ref.name


def plan(
    desired: Sequence[DeploymentSpec],
    observed: Sequence[ObservedDeployment],
    routed: Mapping[str, tuple[Backend, ...]] | None = None,
    *,
    backoff: RestartBackoff | None = None,
) -> list[Action]:
    """The actions that move ``observed``/``routed`` one step towards ``desired``, in order."""
    routed = routed or {}
    backoff = backoff or RestartBackoff()
    by_name: dict[str, list[ObservedDeployment]] = {}
    for instance in observed:
        by_name.setdefault(instance.ref.name, []).append(instance)
    actions: list[Action] = []
    for spec in desired:
        instances = by_name.pop(spec.name, [])
        actions += _plan_deployment(spec, instances, routed.get(spec.name), backoff)
    wanted = {spec.name for spec in desired}
    for name in sorted(set(routed) - wanted):
        actions.append(RemoveRoute(name))
    for name in sorted(by_name):
        actions += [_stop(i) for i in by_name[name] if i.state is not InstanceState.STOPPING]
    return actions


def _plan_deployment(
    spec: DeploymentSpec,
    instances: list[ObservedDeployment],
    current: tuple[Backend, ...] | None,
    backoff: RestartBackoff,
) -> list[Action]:
    wanted = {route.version: route.weight for route in spec.routes}
    mirrors = spec.mirrors
    slots = [(v, r) for v in wanted for r in range(spec.replicas)] + [(v, 0) for v in mirrors]
    live = {_slot(i): i for i in instances if i.state is not InstanceState.STOPPING}
    has_ready = {i.ref.version for i in live.values()
                 if i.state in (InstanceState.READY, InstanceState.WRITTEN)}
    actions: list[Action] = []
    for version, replica in slots:
        instance = live.get((version, replica))
        if instance is None and replica > 0 and version not in has_ready:
            continue  # one replica first: on a busy machine it answers sooner alone
        if instance is None and not _is_stopping(instances, version, replica):
            actions.append(StartVersion(VersionRef(spec.name, spec.model, version, replica)))
        elif instance is not None and instance.ref.model != spec.model:
            actions.append(_stop(instance))
        elif instance is not None and _is_due_for_restart(instance, backoff):
            actions.append(StartVersion(instance.ref))
    new_route = _next_route(spec, wanted, mirrors, live, current)
    if new_route != current:
        actions.append(SwitchTraffic(spec.name, new_route))
    routed_urls = {backend.url for backend in new_route}
    is_serving = any(backend.weight > 0 for backend in new_route)
    is_whole = all(live.get(slot) is not None and live[slot].state is InstanceState.READY
                   for slot in slots if slot[0] in wanted)
    for slot, instance in sorted(live.items()):
        if slot in slots or instance.url in routed_urls:
            continue
        if instance.state is InstanceState.STARTING and not is_serving:
            continue  # maybe adopted after a restart and not checked yet: all there may be
        if instance.state is InstanceState.READY and not is_whole:
            continue  # the old version stays up until every new replica is ready
        actions.append(_stop(instance))
    return actions


def _slot(instance: ObservedDeployment) -> tuple[int, int]:
    return (instance.ref.version, instance.ref.replica)


def _next_route(
    spec: DeploymentSpec,
    wanted: dict[int, int],
    mirrors: dict[int, int],
    live: dict[tuple[int, int], ObservedDeployment],
    current: tuple[Backend, ...] | None,
) -> tuple[Backend, ...]:
    """The ready replicas of every wanted version (plus ready shadows) once each wanted
    version has one, each replica weighing an equal share of its version's weight (the others
    join as they become ready); until then, whatever still serves. A shadow never holds a
    rollout back.

    When nothing routed still serves (no route known yet: the controller restarted), every
    ready instance of the deployment's model takes an equal share: traffic goes only to
    instances observed ready, and stays with them until each wanted version has one."""
    ready = {
        slot: instance.url
        for slot, instance in live.items()
        if instance.state in (InstanceState.READY, InstanceState.WRITTEN)
        and instance.url is not None
        and instance.ref.model == spec.model
    }
    ready_replicas = {v: [r for r in range(spec.replicas) if (v, r) in ready] for v in wanted}
    if all(ready_replicas.values()):
        routed = [Backend(v, ready[(v, r)], weight / len(rs) if len(rs) > 1 else weight)
                  for v, weight in sorted(wanted.items())
                  for rs in [ready_replicas[v]] for r in rs]
        shadows = [Backend(v, ready[(v, 0)], 0, percent)
                   for v, percent in sorted(mirrors.items()) if (v, 0) in ready]
        return tuple(routed + shadows)
    ready_urls = set(ready.values())
    kept = tuple(b for b in current or () if b.url in ready_urls)
    if any(b.weight > 0 for b in kept):
        return kept
    serving = sorted(ready.items())
    return tuple(Backend(v, url, 100 / len(serving)) for (v, _), url in serving)


def _is_stopping(instances: list[ObservedDeployment], version: int, replica: int) -> bool:
    return any(_slot(i) == (version, replica) for i in instances)


def _is_due_for_restart(instance: ObservedDeployment, backoff: RestartBackoff) -> bool:
    return (
        instance.state is InstanceState.FAILED
        and instance.state_age_s >= backoff.delay_s(instance.failures)
    )


def _stop(instance: ObservedDeployment) -> StopVersion:
    url = instance.url if instance.state is InstanceState.READY else None
    return StopVersion(instance.ref, url)
