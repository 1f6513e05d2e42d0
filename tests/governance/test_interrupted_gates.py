"""A proposal is recorded before its gates run, held by a lease while they run, and failed
with an audit entry when the control plane running them dies (never lost, never stuck)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from control_plane import StaticGates
from greenbutton.errors import StaleState
from greenbutton.governance.approvals import Approvals
from greenbutton.registry import Stage
from greenbutton.store.governance_records import GateOutcome, RequestRecord

from .conftest import World

LEASE_S = 0.4


class HeldGates(StaticGates):
    """Gates that run until the test lets them finish."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def run(self, model: str, version: int) -> list[GateOutcome]:
        self.started.set()
        assert self.release.wait(30), "the test never released the gates"
        return super().run(model, version)


class BrokenGates(StaticGates):
    def run(self, model: str, version: int) -> list[GateOutcome]:
        raise OSError("cannot start the gate worker: no space left on device")


def approvals_with(world: World, gates: StaticGates) -> Approvals:
    return Approvals(world.access, world.registry, gates, gate_lease_s=LEASE_S)


def only_request(world: World) -> RequestRecord:
    (found,) = world.access.store.list_requests(world.model)
    return found


def wait_for_status(world: World, status: str, timeout_s: float = 30.0) -> RequestRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = world.access.store.list_requests(world.model)
        if found and found[0].status == status:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no request of {world.model} reached {status!r}: {found}")


@pytest.fixture
def held(world: World) -> Iterator[tuple[Approvals, HeldGates, threading.Thread]]:
    """A promotion whose gates are running (in a thread) until the test releases them."""
    gates = HeldGates()
    approvals = approvals_with(world, gates)
    thread = threading.Thread(target=approvals.propose, args=(
        world.callers["admin"], world.model, 1, Stage.PRODUCTION, "held"), daemon=True)
    thread.start()
    assert gates.started.wait(30)
    yield approvals, gates, thread
    gates.release.set()
    thread.join(30)


def test_a_proposal_is_on_record_while_its_gates_run(
        world: World, held: tuple[Approvals, HeldGates, threading.Thread]) -> None:
    approvals, gates, thread = held
    running = only_request(world)
    assert (running.status, running.proposer, running.gates) == ("gating", "admin", ())
    with pytest.raises(StaleState, match=f"request #{running.id}"):
        approvals.propose(world.callers["maintainer"], world.model, 1, Stage.PRODUCTION)
    gates.release.set()
    thread.join(30)
    done = only_request(world)
    assert (done.id, done.status, [g.gate for g in done.gates]) == (
        running.id, "pending", ["conformance"])


def test_gates_that_outlive_their_lease_stay_theirs_while_renewed(
        world: World, held: tuple[Approvals, HeldGates, threading.Thread]) -> None:
    """Another control plane's sweep leaves a request alone while its gates still run."""
    approvals, gates, thread = held
    other = approvals_with(world, StaticGates())
    for _ in range(4):
        time.sleep(LEASE_S)
        assert other.fail_interrupted() == []
    assert only_request(world).status == "gating"
    gates.release.set()
    thread.join(30)
    assert only_request(world).status == "pending"


def test_gates_that_cannot_run_fail_their_request(world: World) -> None:
    approvals = approvals_with(world, BrokenGates())
    with pytest.raises(OSError, match="no space left"):
        approvals.propose(world.callers["admin"], world.model, 1, Stage.PRODUCTION)
    failed = only_request(world)
    assert failed.status == "failed"
    assert "no space left on device" in (failed.decision_reason or "")
    # the move can be proposed again at once
    again = approvals_with(world, StaticGates()).propose(
        world.callers["admin"], world.model, 1, Stage.PRODUCTION)
    assert again.status == "pending"


_KILLED_PROPOSER = """
import sys, time
from mlflow import MlflowClient
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import Approvals
from greenbutton.registry import Registry, Stage
from greenbutton.store import open_store

class Forever:
    def run(self, model, version):
        print("gating", flush=True)
        time.sleep(600)

store_uri, mlflow_uri, model, token = sys.argv[1:5]
store = open_store(store_uri)
access = Access(store.governance_store())
approvals = Approvals(access, Registry(MlflowClient(mlflow_uri, mlflow_uri), store), Forever(),
                      gate_lease_s=float(sys.argv[5]))
approvals.propose(access.authenticate(token), model, 2, Stage.PRODUCTION, "killed mid-gates")
"""


def test_gates_of_a_killed_control_plane_are_failed_and_audited(
        world: World, shared_mlflow: MlflowClient, tmp_path: Path) -> None:
    script = tmp_path / "propose.py"
    script.write_text(textwrap.dedent(_KILLED_PROPOSER))
    store_uri = f"sqlite:///{tmp_path / 'gov' / 'gb.db'}"  # the lifecycle_store fixture's
    child = subprocess.Popen(
        [sys.executable, str(script), store_uri, shared_mlflow.tracking_uri, world.model,
         world.secrets["admin"], str(LEASE_S)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "gating\n"
        running = wait_for_status(world, "gating")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        assert child.stdout is not None
        child.stdout.close()
    sweeper = approvals_with(world, StaticGates())
    deadline = time.monotonic() + 30
    failed: list[RequestRecord] = []
    while not failed and time.monotonic() < deadline:  # once the dead one's lease runs out
        failed = sweeper.fail_interrupted()
        time.sleep(0.05)
    assert [r.id for r in failed] == [running.id]
    record = only_request(world)
    assert (record.status, record.decided_by) == ("failed", "greenbutton")
    assert "gates were running" in (record.decision_reason or "")
    fails = world.access.store.audit_entries(actions=["request.fail"])
    assert [(e.actor, e.target, json.loads(e.after)["request_id"]) for e in fails] == [
        ("greenbutton", f"model:{world.model}/2", running.id)]
    assert sweeper.fail_interrupted() == []  # once
    # the same move can be proposed again
    again = sweeper.propose(world.callers["admin"], world.model, 2, Stage.PRODUCTION)
    assert again.status == "pending"
