"""The reconcile loop: observe the target, ``plan``, carry the actions out, repeat.

Usage::

    controller = Controller(desired_state, target, routes, settings)
    task = asyncio.create_task(controller.run(stop_event))
    controller.trigger()          # after a promotion: reconcile now, not at the next poll
    controller.status()           # [DeploymentStatus(name="digits", state="ready",
                                  #   summary="rolling out (v1 -> v2, 0 %): 0/1 ready", ...)]
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ..config import Settings
from .reconcile import (
    Action,
    Backend,
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    RemoveRoute,
    RestartBackoff,
    StartVersion,
    StopVersion,
    SwitchTraffic,
    VersionRef,
    action_deployment,
    plan,
)
from .rollouts import WORST_FIRST, RolloutWatch, shares_by_version
from .routing.table import RouteTable
from .scrape_targets import ScrapeTargetFile
from .summary import Situation, is_crash_looping, summarize
from .targets import SpecAwareTarget, Target

log = logging.getLogger(__name__)


class DeploymentState(StrEnum):
    """What a deployment is doing, as shown to users."""

    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    WRITTEN = "written"


class TrafficShare(BaseModel):
    """One version in a deployment's route table."""

    model_config = ConfigDict(frozen=True)
    version: int
    weight: int
    mirror_percent: int = 0


class DeploymentStatus(BaseModel):
    """One deployment as users see it: desired version, state and where to call it."""

    model_config = ConfigDict(frozen=True)
    name: str
    model: str
    version: int | None
    """The desired version (None while a removed deployment is still stopping)."""
    state: DeploymentState
    url: str
    """Stable gateway URL; does not change across versions."""
    serving_version: int | None = None
    backend_url: str | None = None
    reason: str | None = None
    traffic: tuple[TrafficShare, ...] = ()
    """Every routed (weight) and mirrored (mirror_percent) version right now."""
    failures: int = 0
    """Consecutive failures of the desired version (restarts back off exponentially)."""
    retry_in_s: float | None = None
    """Seconds until the next restart attempt of a failed version."""
    restarts: int = 0
    """Times the desired version's processes were started again after a failure."""
    last_error: str | None = None
    """Why the desired version last failed (kept once it is ready again)."""
    is_crash_looping: bool = False
    """It failed ``summary.CRASH_LOOP_FAILURES`` times in a row (between them never ready for
    ``restart_backoff_max_s``)."""
    summary: str = ""
    """The state in words: ``ready``, ``rolling out (v1 -> v2, 40 %): 1/2 ready``,
    ``crash loop: ...`` (``controller/summary.py``)."""


class Controller:
    """Keeps the target and the route table in line with ``desired_state()``."""

    def __init__(
        self,
        desired_state: Callable[[], list[DeploymentSpec]],
        target: Target,
        routes: RouteTable,
        settings: Settings,
        *,
        on_rollout: Callable[[DeploymentSpec], None] | None = None,
        scrape_targets: ScrapeTargetFile | None = None,
    ) -> None:
        """``on_rollout(spec)``: see ``RolloutWatch`` (e.g. an audit entry per rollout).
        ``scrape_targets``: kept up to date with every serving process observed."""
        self._desired_state = desired_state
        self._rollouts = RolloutWatch(on_rollout)
        self._target = target
        self._routes = routes
        self._settings = settings
        self._backoff = RestartBackoff(
            settings.controller.restart_backoff_s, settings.controller.restart_backoff_max_s
        )
        self._wake = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: dict[VersionRef, asyncio.Task[None]] = {}
        self._errors: dict[str, str] = {}
        self._desired: list[DeploymentSpec] = []
        self._observed: list[ObservedDeployment] = []
        self._scrape_targets = scrape_targets

    async def reconcile_once(self) -> list[Action]:
        """Observe, plan and carry out one step; returns the actions it attempted."""
        async with self._reconciling:
            return await self._reconcile()

    async def _reconcile(self) -> list[Action]:
        try:  # off the loop: it reads the store (and MLflow, now and then)
            desired = await asyncio.to_thread(self._desired_state)
        except Exception:  # never read a failing source as "nothing is desired"
            log.exception("reading desired state failed; keeping everything as it is")
            return []
        if isinstance(self._target, SpecAwareTarget):  # it runs the replicas itself
            await self._target.desire(desired)
            desired = [spec.model_copy(update={"replicas": 1}) for spec in desired]
        observed = self._overlay_draining(await self._target.observe())
        self._desired, self._observed = desired, observed
        if self._scrape_targets is not None:
            try:
                await asyncio.to_thread(self._scrape_targets.write, observed)
            except OSError:
                log.exception("writing Prometheus scrape targets failed")
        for spec in desired:  # level-triggered like the rest: re-applied every pass
            self._routes.set_sticky_header(spec.name, spec.sticky_header)
        actions = plan(desired, observed, self._routes.snapshot(), backoff=self._backoff)
        groups: dict[str, list[Action]] = {}
        for action in actions:
            groups.setdefault(action_deployment(action), []).append(action)
        results = await asyncio.gather(*(self._execute(group) for group in groups.values()))
        self._errors = {name: error for name, error in zip(groups, results, strict=True) if error}
        self._routes.mark_loaded()  # every desired deployment has had its route planned
        await self._rollouts.check(desired, self._routes.snapshot())
        return actions

    async def run(self, stop_event: asyncio.Event) -> None:
        """Reconcile every poll interval (faster while instances start) until ``stop_event``."""
        self._loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop_event.wait())
        try:
            while not stop_event.is_set():
                self._wake.clear()  # before reconciling: a trigger() meanwhile is not lost
                try:
                    await self.reconcile_once()
                except Exception:
                    log.exception("reconcile failed")
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    (stopping, woken),
                    timeout=self._interval_s(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopping.cancel()
            await self._cancel_drains()

    def trigger(self) -> None:
        """Reconcile as soon as possible (safe to call from any thread)."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def status(self) -> list[DeploymentStatus]:
        """Every desired or still-running deployment, as of the last reconcile."""
        routed = self._routes.snapshot()
        statuses = [self._status(spec.name, spec.model, spec, routed) for spec in self._desired]
        wanted = {spec.name for spec in self._desired}
        for instance in self._observed:
            if instance.ref.name not in wanted:
                wanted.add(instance.ref.name)
                statuses.append(self._status(instance.ref.name, instance.ref.model, None, routed))
        return statuses

    async def _execute(self, actions: list[Action]) -> str | None:
        """Carry out one deployment's actions in order; the first failure skips the rest."""
        for action in actions:
            try:
                await self._apply(action)
            except Exception as error:
                log.exception("%s failed", action)
                return f"{type(action).__name__} failed: {error}"
        return None

    async def _apply(self, action: Action) -> None:
        log.info("%s", action)
        if isinstance(action, StartVersion):
            await self._target.start(action.ref)
        elif isinstance(action, SwitchTraffic):
            if isinstance(self._target, SpecAwareTarget):  # e.g. Kubernetes: the Ingress
                await self._target.route(action.name, action.backends)
            self._routes.switch(action.name, action.backends)
        elif isinstance(action, RemoveRoute):
            self._routes.remove(action.name)
        elif action.ref not in self._draining:
            task = asyncio.create_task(self._drain_and_stop(action))
            self._draining[action.ref] = task

    async def _drain_and_stop(self, action: StopVersion) -> None:
        drain_s = self._settings.controller.drain_timeout_s
        try:
            if action.url is not None and not await self._routes.wait_drained(action.url, drain_s):
                log.warning("%s still had requests in flight after %gs", action.ref, drain_s)
            await self._target.stop(action.ref, drain_s)
        except Exception:
            log.exception("stopping %s failed", action.ref)
        finally:
            del self._draining[action.ref]
            self.trigger()

    async def _cancel_drains(self) -> None:
        tasks = list(self._draining.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _overlay_draining(self, observed: list[ObservedDeployment]) -> list[ObservedDeployment]:
        """Instances whose drain has begun count as stopping, even before the target knows."""
        return [dataclasses.replace(i, state=InstanceState.STOPPING)
                if i.ref in self._draining else i for i in observed]

    def _interval_s(self) -> float:
        """Poll fast while something starts or drains; wake up when a restart falls due."""
        settings = self._settings.controller
        waits = [settings.poll_interval_s, 0.0 if self._draining else math.inf]
        for instance in self._observed:
            if instance.state is InstanceState.FAILED:
                waits.append(self._backoff.delay_s(instance.failures) - instance.state_age_s)
            elif instance.state not in (InstanceState.READY, InstanceState.WRITTEN):
                waits.append(0.0)
        return max(settings.ready_poll_interval_s, min(waits))

    def _status(self, name: str, model: str, spec: DeploymentSpec | None,
                routed: dict[str, tuple[Backend, ...]]) -> DeploymentStatus:
        version = spec.version if spec is not None else None
        mine = [i for i in self._observed if i.ref.name == name]
        instances: dict[int, ObservedDeployment] = {}
        for i in sorted(mine, key=lambda i: WORST_FIRST.index(i.state)):
            instances.setdefault(i.ref.version, i)  # a version's least healthy replica speaks
        instance = instances.get(version) if version is not None else None
        backends = routed.get(name, ())
        if instance is None:
            state = DeploymentState.STOPPING if version is None else DeploymentState.PENDING
        else:
            state = DeploymentState(instance.state.value)
        primary = max(backends, key=lambda b: b.weight, default=None)
        is_failed = instance is not None and instance.state is InstanceState.FAILED
        retry_in_s = max(0.0, self._backoff.delay_s(instance.failures) - instance.state_age_s) \
            if is_failed and instance is not None else None
        wanted = tuple(r.version for r in spec.routes) if spec is not None else ()
        of_version = [i for i in mine if i.ref.version == version]
        failures = max((i.failures for i in of_version), default=0)
        last_error = next((i.last_error for i in of_version if i.last_error), None)
        traffic = tuple(TrafficShare(version=v, weight=w, mirror_percent=m)
                        for v, w, m in shares_by_version(backends))
        situation = Situation(
            state=state.value, version=version, wanted=wanted,
            traffic={t.version: t.weight for t in traffic if not t.mirror_percent},
            ready=sum(i.ref.version in wanted and i.state is InstanceState.READY for i in mine),
            replicas=len(wanted) * (spec.replicas if spec is not None else 0),
            failures=failures, restarts=sum(i.restarts for i in of_version),
            last_error=last_error, retry_in_s=retry_in_s)
        return DeploymentStatus(
            name=name,
            model=model,
            version=version,
            state=state,
            url=f"{self._settings.server.url}/endpoints/{name}/",
            serving_version=primary.version if primary else None,
            backend_url=primary.url if primary else None,
            reason=self._errors.get(name) or (instance.reason if instance else None),
            traffic=traffic,
            failures=failures,
            retry_in_s=retry_in_s,
            restarts=situation.restarts,
            last_error=last_error,
            is_crash_looping=is_crash_looping(failures),
            summary=summarize(situation),
        )
