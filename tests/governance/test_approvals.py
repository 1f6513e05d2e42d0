"""The promotion workflow on real objects: gates block, four-eyes, overrides, races, audit."""

from __future__ import annotations

import threading

import pytest

from greenbutton.errors import (
    InvalidInput,
    PermissionDenied,
    PromotionBlocked,
    StaleState,
)
from greenbutton.governance.audit import verify_chain
from greenbutton.registry import Stage
from greenbutton.store.governance_records import GateOutcome

from .conftest import World

LOW = [GateOutcome("metric:accuracy", False, {"reason": "accuracy 0.41; required >= 0.9"})]


def test_failing_gate_blocks_approval_with_reason(world: World) -> None:
    world.gates.verdicts[(world.model, 1)] = LOW
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION)
    assert request.status == "blocked"
    with pytest.raises(PromotionBlocked, match="accuracy 0.41"):
        world.approvals.approve(world.callers["maintainer"], request.id)
    assert world.registry.get_version(world.model, 1).stage is Stage.NONE


def test_override_without_reason_is_refused(world: World) -> None:
    world.gates.verdicts[(world.model, 1)] = LOW
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION)
    for reason in (None, "", "   "):
        with pytest.raises(InvalidInput):
            world.approvals.override(world.callers["admin"], request.id, reason)
    assert world.access.store.get_request(request.id).status == "blocked"


def test_override_needs_manage(world: World) -> None:
    world.gates.verdicts[(world.model, 1)] = LOW
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION)
    with pytest.raises(PermissionDenied):
        world.approvals.override(world.callers["maintainer"], request.id, "urgent fix")


def test_override_with_reason_applies_and_is_audited(world: World) -> None:
    world.gates.verdicts[(world.model, 1)] = LOW
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION)
    outcome = world.approvals.override(world.callers["admin"], request.id, "regulator waiver #7")
    assert outcome.request is not None and outcome.request.is_override
    assert world.registry.get_version(world.model, 1).stage is Stage.PRODUCTION
    actions = [e.action for e in world.access.store.audit_entries()]
    assert "request.override" in actions and "lifecycle.transition" in actions


def test_proposer_cannot_approve_own_request_with_four_eyes(world: World) -> None:
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    maintainer = world.callers["maintainer"]
    request = world.approvals.propose(maintainer, world.model, 2, Stage.PRODUCTION)
    with pytest.raises(PermissionDenied):
        world.approvals.approve(maintainer, request.id)
    world.approvals.approve(world.callers["admin"], request.id)
    assert world.registry.get_version(world.model, 2).stage is Stage.PRODUCTION


def test_promote_without_four_eyes_self_approves(world: World) -> None:
    outcome = world.approvals.promote(world.callers["maintainer"], world.model, 3,
                                      Stage.PRODUCTION, "ship")
    assert outcome.request is not None and outcome.request.status == "approved"
    assert [t.to_stage for t in outcome.transitions] == [Stage.PRODUCTION]


def test_promote_with_four_eyes_leaves_request_pending(world: World) -> None:
    world.approvals.set_four_eyes(world.callers["admin"], world.model, True)
    outcome = world.approvals.promote(world.callers["maintainer"], world.model, 3,
                                      Stage.PRODUCTION)
    assert outcome.transitions == [] and outcome.request is not None
    assert outcome.request.status == "pending"


def test_concurrent_approvals_have_one_winner(world: World) -> None:
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.STAGING)
    barrier, results = threading.Barrier(2), []

    def approve(role: str) -> None:
        barrier.wait()
        try:
            world.approvals.approve(world.callers[role], request.id)
            results.append("won")
        except StaleState:
            results.append("409")

    threads = [threading.Thread(target=approve, args=(r,)) for r in ("admin", "maintainer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["409", "won"]
    assert world.registry.get_version(world.model, 1).stage is Stage.STAGING


def test_workflow_leaves_an_intact_audit_chain(world: World) -> None:
    request = world.approvals.propose(world.callers["data-scientist"], world.model, 1,
                                      Stage.PRODUCTION, "better")
    world.approvals.reject(world.callers["maintainer"], request.id, "not yet")
    report = verify_chain(world.access.store)
    assert report.is_intact and report.checked >= 8
