"""What a deployment is doing, in words: the controller's status against what is wanted.

``wanted`` is the deployment resolved from the lifecycle and its spec *now* (what the
controller will aim at on its next pass); the status is what the last pass saw. Usage::

    rollout_of(status, wanted)
    # Rollout(step=Step.STARTING, text="rolling out v1 → v2: starting v2; v1 keeps serving")
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from ...controller.desired import load_spec
from ...controller.loop import DeploymentState, DeploymentStatus
from ...controller.reconcile import DeploymentSpec
from ...controller.specs import DeploySpec, default_spec, resolve
from ...registry import Stage, VersionInfo
from ...store.protocol import DeploymentStore, StoredDeploymentSpec


class Step(StrEnum):
    """Where a rollout stands (the page draws them as a row of steps)."""

    WAITING = "waiting"
    """The lifecycle or the spec changed; the controller has not acted on it yet."""
    STARTING = "starting"
    SWITCHING = "switching"
    """Every wanted version is not yet routed as the spec says."""
    DONE = "done"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Rollout:
    """One deployment's rollout step and a sentence saying it."""

    step: Step
    text: str


def shares(weights: Iterable[tuple[int, float]]) -> dict[int, int]:
    """version → percent of live traffic (rounded), from relative weights."""
    positive = [(v, w) for v, w in weights if w > 0]
    total = sum(w for _, w in positive)
    return {v: round(100 * w / total) for v, w in sorted(positive)} if total else {}


def describe(percent: dict[int, int]) -> str:
    """``v1 80 %, v2 20 %``."""
    return ", ".join(f"v{v} {p} %" for v, p in sorted(percent.items())) or "no traffic"


def rollout_of(status: DeploymentStatus, wanted: DeploymentSpec | None) -> Rollout:
    """The step ``status`` is at, given the deployment wanted now (None: unknown or removed)."""
    serving = status.serving_version
    keeps = f"; v{serving} keeps serving" if serving and serving != status.version else ""
    if status.state is DeploymentState.STOPPING or status.version is None:
        return Rollout(Step.STOPPING, "stopping: no longer wanted")
    if status.state is DeploymentState.FAILED:
        retry = f"; retry in {status.retry_in_s:.0f} s" if status.retry_in_s is not None else ""
        reason = status.reason or "no reason given"
        return Rollout(Step.FAILED, f"v{status.version} failed: {reason}{retry}{keeps}")
    if wanted is not None and wanted.version != status.version:
        planned = describe(shares((r.version, r.weight) for r in wanted.routes))
        now = f"; v{serving} keeps serving" if serving else ""
        return Rollout(Step.WAITING, f"waiting for the controller to roll out {planned}{now}")
    if status.state in (DeploymentState.PENDING, DeploymentState.STARTING):
        if serving and serving != status.version:
            return Rollout(Step.STARTING, f"rolling out v{serving} → v{status.version}: "
                                          f"starting v{status.version}{keeps}")
        return Rollout(Step.STARTING, f"starting v{status.version}"
                                      f"{'' if serving else '; no traffic yet'}")
    routed = shares((t.version, t.weight) for t in status.traffic)
    mirrored = {t.version: t.mirror_percent for t in status.traffic if t.mirror_percent > 0}
    if wanted is not None:
        target = shares((r.version, r.weight) for r in wanted.routes)
        if not _close(target, routed) or wanted.mirrors != mirrored:
            return Rollout(Step.SWITCHING, f"switching traffic to {describe(target)}; "
                                           f"now {describe(routed)}")
    shadow = ", ".join(f"v{v} {p} %" for v, p in sorted(mirrored.items()))
    return Rollout(Step.DONE, f"{status.state.value}: {describe(routed)}"
                              f"{'; shadow ' + shadow if shadow else ''}")


def _close(a: dict[int, int], b: dict[int, int]) -> bool:
    """Same versions, percentages within rounding (weights split over replicas)."""
    return a.keys() == b.keys() and all(abs(a[v] - b[v]) <= 1 for v in a)


def spec_of(specs: DeploymentStore, name: str,
            model: str) -> tuple[DeploySpec | None, StoredDeploymentSpec | None]:
    """The spec deployment ``name`` follows (stored, else the default one of a model deployed
    under its own name) and the stored record (None: the default)."""
    stored = specs.get_spec(name)
    if stored is None:
        return (default_spec(model) if name == model else None), None
    try:
        return load_spec(stored), stored
    except ValidationError:  # the controller skips it too (controller/desired.py)
        return None, stored


def wanted_of(spec: DeploySpec | None, versions: Iterable[VersionInfo]) -> DeploymentSpec | None:
    """What the controller will aim at on its next pass, from the spec and the stages now."""
    if spec is None:
        return None
    stages: dict[Stage, int] = {v.stage: v.version for v in versions
                                if v.stage in (Stage.PRODUCTION, Stage.STAGING)}
    return resolve(spec, stages)
