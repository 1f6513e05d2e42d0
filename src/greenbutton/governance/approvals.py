"""``Approvals``: propose → gates → approve/reject (four-eyes) → lifecycle change, audited.

Statuses: ``gating`` (recorded, its gates running), ``pending`` (gates passed, awaiting a
decision), ``blocked`` (a gate failed: only an override with ``manage`` and a written reason
moves it on), ``approved``, ``rejected``, ``failed`` (its gates could not run or were
interrupted — the control plane running them died —, or approved but the lifecycle move
itself failed, e.g. raced by another promotion).

Deployment specs decide which approved versions get how much traffic, so under four-eyes a
spec change is a request too (kind ``deployment``): someone else approves it before it is
stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import (
    DeploymentNotFound,
    GreenbuttonError,
    InvalidInput,
    InvalidTransition,
    NotReady,
    PermissionDenied,
    PromotionBlocked,
    StaleState,
)
from ..registry import Registry, Stage
from ..store.governance_records import GATING, AuditEvent, GateOutcome, RequestRecord
from ..store.protocol import DeploymentStore, Transition
from .access import Access, Caller
from .gate_lease import GateLease
from .permissions import Action, Permission, Resource

PROPOSABLE = frozenset({Stage.STAGING, Stage.PRODUCTION})
MAX_REASON = 4000
DEPLOYMENT = "deployment"
"""Kind (and ``to_stage``) of a request to change a deployment spec."""
INTERRUPTED = "its gates were running when the control plane running them stopped; propose again"


@dataclasses.dataclass(frozen=True)
class SpecChange:
    """A deployment spec to store (``spec``) or to forget (``None``)."""

    name: str
    model: str
    spec: dict[str, Any] | None
    expected_revision: int | None = None


class GateRunner(Protocol):
    """Runs a version's promotion gates (out of process: gates load the model)."""

    def run(self, model: str, version: int) -> list[GateOutcome]:
        """Every gate's verdict on ``model`` version ``version``."""
        ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a promotion did: the request and the lifecycle moves it caused (if any)."""

    request: RequestRecord | None
    transitions: list[Transition]


class Approvals:
    """The promotion workflow.

    Usage::

        approvals = Approvals(access, registry, runner)
        request = approvals.propose(alice, "digits", 5, Stage.PRODUCTION, reason="better F1")
        approvals.approve(bob, request.id)
    """

    def __init__(self, access: Access, registry: Registry, gates: GateRunner, *,
                 four_eyes_default: bool = False,
                 on_change: Callable[[], None] = lambda: None,
                 deployments: DeploymentStore | None = None,
                 check_spec: Callable[[SpecChange], None] = lambda change: None,
                 gate_lease_s: float = 10.0) -> None:
        """``check_spec`` raises ``InvalidInput`` for a spec that may not be stored now (it
        routes to a version outside the governed lifecycle). ``gate_lease_s``: how long
        gates left without their control plane stay ``gating`` before a sweep fails them."""
        self._access, self._store = access, access.store
        self._gate_lease_s = gate_lease_s
        self._registry, self._gates = registry, gates
        self._four_eyes_default = four_eyes_default
        self._on_change = on_change
        self._deployments, self._check_spec = deployments, check_spec

    def is_four_eyes(self, model: str) -> bool:
        """Whether a second person must approve promotions of ``model``."""
        policy = self._store.four_eyes(model)
        return self._four_eyes_default if policy is None else policy

    def set_four_eyes(self, caller: Caller, model: str, four_eyes: bool) -> None:
        """Change a model's four-eyes policy (needs ``manage``)."""
        self._access.authorize(caller, Resource.POLICY, Action.CHANGE, model=model)
        self._registry.require_model(model)
        event = AuditEvent(caller.name, "policy.four_eyes", f"model:{model}",
                           before=self.is_four_eyes(model), after=four_eyes)
        self._store.set_four_eyes(model, four_eyes, by=caller.name, events=[event])

    def propose(self, caller: Caller, model: str, version: int, to: Stage,
                reason: str | None = None) -> RequestRecord:
        """Record a request to move a version to Staging/Production, with its gate results."""
        self._access.authorize(caller, Resource.REQUEST, Action.PROPOSE, model=model)
        if to not in PROPOSABLE:
            raise InvalidTransition(f"proposals go to {' or '.join(PROPOSABLE)}", field="stage")
        current = self._registry.get_version(model, version).stage
        if current is to:
            raise InvalidTransition(f"version {version} of {model!r} is already in {to}")
        open_request = self._store.open_request(model, version, to.value)
        if open_request is not None:  # before the gates: they take a while
            raise StaleState(f"request #{open_request.id} for the same move is already "
                             f"{open_request.status} (proposed by {open_request.proposer!r})")
        target = f"model:{model}/{version}"
        propose = AuditEvent(caller.name, "request.propose", target, before=current.value,
                             after={"to": to.value, "reason": _text(reason)})
        # on record before the gates run, so a crash meanwhile leaves a trace to fail
        request = self._store.create_request(model, version, to.value, GATING, caller.name,
                                             _text(reason), [], events=[propose],
                                             lease_s=self._gate_lease_s)
        try:
            with GateLease(self._store.renew_lease, request.id, lease_s=self._gate_lease_s):
                gates = self._gates.run(model, version)
        except Exception as error:
            reason = f"its gates could not run: {error}"
            with contextlib.suppress(StaleState):  # failed as lapsed meanwhile: raise ours
                self._store.decide_request(request.id, [GATING], "failed", by="greenbutton",
                                           reason=reason, is_override=False,
                                           events=[_failure(request, reason)])
            raise
        status = "pending" if all(g.is_passed for g in gates) else "blocked"
        verdicts = AuditEvent("greenbutton", "gates.run", target, after={
            "status": status, "gates": [dataclasses.asdict(g) for g in gates]})
        return self._store.finish_gates(request.id, status, gates, events=[verdicts])

    def fail_interrupted(self) -> list[RequestRecord]:
        """Fail (and audit) the requests whose gates lost their control plane: their lease
        ran out. Safe to call from every replica at once; each request is failed once."""
        return self._store.fail_lapsed(INTERRUPTED, lambda r: [_failure(r, INTERRUPTED)])

    def approve(self, caller: Caller, request_id: int, reason: str | None = None) -> Outcome:
        """Approve a pending request and apply it; ``PromotionBlocked`` if a gate failed."""
        request = self._store.get_request(request_id)
        self._access.authorize(caller, Resource.REQUEST, Action.APPROVE, model=request.model)
        if request.status == "blocked":
            failed = ", ".join(f"{g.gate}: {g.detail.get('reason', 'failed')}"
                               for g in request.gates if not g.is_passed)
            raise PromotionBlocked(f"request #{request_id} is blocked by its gates ({failed}); "
                                   "an override needs 'manage' and a reason")
        return self._decide(caller, request, "approved", reason, is_override=False)

    def override(self, caller: Caller, request_id: int, reason: str | None) -> Outcome:
        """Approve despite failed gates: needs ``manage`` and a written reason."""
        request = self._store.get_request(request_id)
        self._access.authorize(caller, Resource.REQUEST, Action.OVERRIDE, model=request.model)
        if not reason or not reason.strip():
            raise InvalidInput("an override needs a written reason", field="reason")
        return self._decide(caller, request, "approved", reason, is_override=True)

    def reject(self, caller: Caller, request_id: int, reason: str | None = None) -> RequestRecord:
        """Reject a pending or blocked request."""
        request = self._store.get_request(request_id)
        self._access.authorize(caller, Resource.REQUEST, Action.REJECT, model=request.model)
        event = AuditEvent(caller.name, "request.reject", _target(request),
                           before=request.status, after={"reason": _text(reason)})
        return self._store.decide_request(request_id, ["pending", "blocked"], "rejected",
                                          by=caller.name, reason=_text(reason),
                                          is_override=False, events=[event])

    def promote(self, caller: Caller, model: str, version: int, to: Stage,
                reason: str | None = None) -> Outcome:
        """The green button: propose and, when four-eyes is off and the caller holds
        ``approve``, approve at once; archiving needs ``deploy`` and no request."""
        if to is Stage.ARCHIVED:
            self._access.authorize(caller, Resource.MODEL, Action.ARCHIVE, model=model)
            return Outcome(None, self._apply(caller.name, model, version, to, reason, None))
        request = self.propose(caller, model, version, to, reason)
        if request.status == "blocked":
            return self.approve(caller, request.id, reason)  # raises PromotionBlocked
        if self.is_four_eyes(model) or Permission.APPROVE not in self._access.holds(caller, model):
            return Outcome(request, [])
        return self.approve(caller, request.id, reason)

    def change_deployment(self, caller: Caller, change: SpecChange,
                          reason: str | None = None) -> Outcome:
        """Store or forget a spec now, or, under four-eyes, record the request for someone
        else to approve (``Outcome.request`` set, nothing changed yet)."""
        self._access.authorize(caller, Resource.DEPLOYMENT, Action.CHANGE, model=change.model)
        self._check_spec(change)
        if not self.is_four_eyes(change.model):
            self._apply_spec(caller.name, change, None)
            return Outcome(None, [])
        open_request = self._store.open_request(change.model, 0, DEPLOYMENT, DEPLOYMENT)
        if open_request is not None:
            raise StaleState(f"request #{open_request.id} to change a deployment of "
                             f"{change.model!r} is already pending")
        payload = dataclasses.asdict(change)
        event = AuditEvent(caller.name, "request.propose", f"deployment:{change.name}",
                           after={"change": payload, "reason": _text(reason)})
        request = self._store.create_request(change.model, 0, DEPLOYMENT, "pending",
                                             caller.name, _text(reason), [], events=[event],
                                             kind=DEPLOYMENT, payload=payload)
        return Outcome(request, [])

    def _apply_spec(self, actor: str, change: SpecChange, request_id: int | None) -> None:
        if self._deployments is None:
            raise NotReady("this control plane keeps no deployment specs")
        target = f"deployment:{change.name}"
        before = self._deployments.get_spec(change.name)
        if change.spec is None:
            event = AuditEvent(actor, "deployment.spec.delete", target, before=None
                               if before is None else {"spec": before.spec,
                                                       "revision": before.revision},
                               after={"request_id": request_id})
            if before is None or not self._deployments.delete_spec(
                    change.name, actor=actor, expected_revision=change.expected_revision,
                    events=[event]):
                raise DeploymentNotFound(f"no stored spec for {change.name!r}", field="name")
        else:
            event = AuditEvent(actor, "deployment.spec.put", target,
                               before=before.spec if before else None,
                               after={"spec": change.spec, "request_id": request_id,
                                      "revision": (before.revision if before else 0) + 1})
            self._deployments.put_spec(change.name, change.spec, actor=actor,
                                       expected_revision=change.expected_revision,
                                       events=[event])
        self._on_change()

    def _decide(self, caller: Caller, request: RequestRecord, status: str,
                reason: str | None, *, is_override: bool) -> Outcome:
        if self.is_four_eyes(request.model) and caller.name == request.proposer:
            raise PermissionDenied(f"four-eyes: {caller.name!r} proposed request #{request.id} "
                                   "and cannot approve it")
        action = "request.override" if is_override else "request.approve"
        event = AuditEvent(caller.name, action, _target(request), before=request.status,
                           after={"reason": _text(reason)})
        decided = self._store.decide_request(
            request.id, ["blocked"] if is_override else ["pending"], status, by=caller.name,
            reason=_text(reason), is_override=is_override, events=[event])
        try:
            if request.kind == DEPLOYMENT:
                change = SpecChange(**(request.payload or {}))
                self._check_spec(change)  # the lifecycle may have moved since it was asked
                self._apply_spec(caller.name, change, request.id)
                done = []
            else:
                done = self._apply(caller.name, request.model, request.version,
                                   Stage(request.to_stage), reason, request.id)
        except GreenbuttonError as error:
            failure = AuditEvent("greenbutton", "request.fail", _target(request),
                                 after={"error": error.message})
            self._store.decide_request(request.id, [status], "failed", by=caller.name,
                                       reason=error.message, is_override=is_override,
                                       events=[failure])
            raise
        return Outcome(self._store.get_request(decided.id), done)

    def _apply(self, actor: str, model: str, version: int, to: Stage, reason: str | None,
               request_id: int | None) -> list[Transition]:
        note = _text(reason) if request_id is None else f"request #{request_id}: {reason or ''}"
        done = self._registry.transition(model, version, to, actor=actor,
                                         reason=note.strip() if note else None,
                                         context={"request_id": request_id})
        self._on_change()
        return done


def _failure(request: RequestRecord, reason: str) -> AuditEvent:
    return AuditEvent("greenbutton", "request.fail", _target(request), before=request.status,
                      after={"error": reason})


def _target(request: RequestRecord) -> str:
    if request.kind == DEPLOYMENT and request.payload:
        return f"deployment:{request.payload['name']}"
    return f"model:{request.model}/{request.version}"


def _text(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters", field="reason")
    return value
