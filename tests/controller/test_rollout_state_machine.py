"""The rollout invariant as a state machine, through crashes of the control plane and of models.

Hypothesis draws steps against real processes on 127.0.0.1 (``controller_process.py``: the
reconcile loop, the local target and the gateway, as ``greenbutton up`` runs them): promote a
good version (fast or slow to load), promote a broken one (never ready, or exits at once),
kill -9 the control plane, restart it, kill -9 one serving process, wait for the rollout. A
model answers 503 until it is ready. Every 50 ms a watch thread sends a request to the stable
URL and reads the controller's status file. After every step:

- every answer was a 200, except connection errors while no control plane listened and
  anything while a ready serving process that was killed had no ready successor yet;
- the controller never routed to an instance it observed still starting (looked at every
  50 ms, not only between steps);
- the stable URL answers 200 whenever a ready backend existed before (after a restart too:
  adoption routes only what it observed ready, and moves nothing before);
- no orphans: every fake serving process of this home is in the records;
- status == reality: the processes the controller observes are the live ones, it routes only
  to instances it observed ready, its status shows the desired version and the routed ones,
  and whoever answers the stable URL is a recorded process of the version it claims.

Waits are bounded polls. Leader changes (two control planes on one home) are not drawn here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from greenbutton.controller.targets.local_records import (
    find_live_pid,
    is_alive,
    load_records,
)

pytestmark = pytest.mark.slow

CONTROLLER = Path(__file__).with_name("controller_process.py")
NAME = "digits"
GOOD_DELAYS_S = ("0.1", "2")
"""A good version is ready at once, or loads for two seconds (long enough to crash into)."""
BROKEN = ("inf", "exit")
"""A broken version never becomes ready, or exits as soon as it starts."""
REQUEST_INTERVAL_S = 0.05
MAX_REQUESTS = 20_000
RECOVERY_S = 30.0
"""A killed ready process has a ready successor within this (restart backoff at most 4 s)."""
CONSISTENT_S = 10.0


def wait_until(mismatch: Callable[[], str | None], timeout_s: float, what: str) -> None:
    """Poll ``mismatch`` every 50 ms until it says None; fail with its last word after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (last := mismatch()) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s: {last}")
        time.sleep(0.05)


def fake_server_pids(home: Path) -> set[int]:
    """Live fake serving processes started for ``home`` (their cwd is ``home/run``)."""
    run = str(home / "run")
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            is_fake = b"fake_server.py" in (entry / "cmdline").read_bytes()
            is_ours = is_fake and os.readlink(entry / "cwd") == run
        except OSError:
            continue
        if is_ours and is_alive(int(entry.name)):
            pids.add(int(entry.name))
    return pids


@dataclass
class Window:
    """A time when some failed answers are excused: ``unreachable`` excuses connection errors
    (no control plane listening); ``outage`` excuses any (a ready process was killed)."""

    kind: str
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None

    def covers(self, start: float, end: float, status: int | None) -> bool:
        overlaps = self.opened <= end and (self.closed is None or self.closed >= start)
        return overlaps and (self.kind == "outage" or status is None)


@dataclass(frozen=True)
class Answer:
    """One request through the gateway: status (None: no HTTP answer) and when."""

    start: float
    end: float
    status: int | None
    body: str


class ControlPlane:
    """``controller_process.py`` with its gateway on a fixed port, desired state, versions'
    behaviour and status in files under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.desired, self.versions = home / "desired.json", home / "versions.json"
        self.status_file = home / "status.json"
        with socket.create_server(("127.0.0.1", 0)) as sock:
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.kinds: dict[int, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{NAME}/predict"

    def promote(self, version: int, kind: str) -> None:
        """Desire ``version``, ready after ``kind`` seconds, or broken (``inf``, ``exit``)."""
        self.kinds[version] = kind
        self.versions.write_text(json.dumps(self.kinds))
        self.desired.write_text(json.dumps([{"name": NAME, "model": NAME, "version": version}]))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CONTROLLER), str(self.home), str(self.desired),
             "--gateway-port", str(self.port), "--versions", str(self.versions),
             "--status-file", str(self.status_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def records(self) -> dict[int, tuple[int, int]]:
        """Live recorded serving processes: pid -> (version, port). A record saved just before
        its spawn (the control plane killed right then) is found by its instance id, as the
        next controller finds it."""
        records = load_records(self.home / "run" / "local-target.json")
        return {pid: (r.version, r.port) for r in records
                if (pid := find_live_pid(r)) is not None}

    def status(self, since: float) -> dict[str, Any] | None:
        """The running controller's status file, if written after ``since`` (epoch s)."""
        try:
            state: dict[str, Any] = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None
        is_current = self.process is not None and state["pid"] == self.process.pid
        return state if is_current and state["time"] > since else None

    def probe(self) -> tuple[int | None, dict[str, Any]]:
        """One request through the gateway: status (None: unreachable) and JSON body."""
        try:
            response = httpx.post(self.url, json={"x": 1}, timeout=10, trust_env=False)
        except httpx.TransportError:
            return None, {}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}


class Watch:
    """Every ``REQUEST_INTERVAL_S``, in a thread: one request to the stable URL, and one look at
    the controller's status for a route to an instance it observed still starting."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane, self.answers = plane, list[Answer]()
        self.unready_routes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            for _ in range(MAX_REQUESTS):
                if self._stop.wait(REQUEST_INTERVAL_S):
                    return
                start = time.monotonic()
                try:
                    response = client.post(self.plane.url, json={"x": 1})
                    status, body = response.status_code, response.text[:200]
                except httpx.TransportError as error:
                    status, body = None, type(error).__name__
                self.answers.append(Answer(start, time.monotonic(), status, body))
                self._look_at_routes()

    def _look_at_routes(self) -> None:
        state = self.plane.status(0.0)
        if state is None:
            return
        starting = {o["url"] for o in state["observed"] if o["state"] == "starting"}
        routed = {b["url"] for b in state["routes"].get(NAME, [])}
        if routed & starting:
            self.unready_routes.append(f"routed {sorted(routed)}, starting {sorted(starting)}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def is_ready(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2,
                             trust_env=False)
    except httpx.TransportError:
        return False
    return response.status_code == 200


class Rollouts(RuleBasedStateMachine):
    """What users, crashes and the kernel do to one deployment; the promises after each.

    A broken promise is kept in ``violation`` and raised by ``teardown``, the remaining steps
    still drawn and carried out but no longer waited on: the steps drawn never depend on when
    a race was lost, so Hypothesis can replay and shrink a failing run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="gb-rollouts-"))
        self.plane = ControlPlane(self.home)
        self.watch: Watch | None = None
        self.windows: list[Window] = []
        self.version = 0
        self.is_up = False
        """Whether the control plane runs (model state: preconditions never look outside)."""
        self.checked = 0
        """Answers of the client already checked."""
        self.steps: list[str] = []
        self.violation: str | None = None

    @initialize()
    def serve_v1(self) -> None:
        self.version = 1
        self._step("serve v1")
        self.plane.promote(1, "0.1")
        self.plane.start()
        self.is_up = True
        wait_until(lambda: None if self.plane.probe()[0] == 200 else "no 200", 30, "v1 serves")
        self.watch = Watch(self.plane)

    @rule(delay_s=st.sampled_from(GOOD_DELAYS_S), pause_s=st.sampled_from((0.0, 0.5, 2.0)))
    def promote(self, delay_s: str, pause_s: float) -> None:
        self.version += 1
        self._step(f"promote v{self.version}, ready after {delay_s}s")
        self.plane.promote(self.version, delay_s)
        self._pause(pause_s)

    @rule(kind=st.sampled_from(BROKEN), pause_s=st.sampled_from((0.0, 0.5, 2.0)))
    def promote_broken(self, kind: str, pause_s: float) -> None:
        self.version += 1
        self._step(f"promote broken v{self.version} ({kind})")
        self.plane.promote(self.version, kind)
        self._pause(pause_s)

    @precondition(lambda self: self.is_up)
    @rule()
    def kill_control_plane(self) -> None:
        self._step("kill -9 the control plane")
        self.windows.append(Window("unreachable"))
        self.plane.kill9()
        self.is_up = False

    @precondition(lambda self: self.is_up)
    @rule(down_s=st.sampled_from((0.0, 1.0)))
    def crash_control_plane(self, down_s: float) -> None:
        """kill -9 and restart at once: the common crash (and the likeliest to land mid-step)."""
        self.kill_control_plane()
        self._pause(down_s)
        self.restart_control_plane()

    @precondition(lambda self: not self.is_up)
    @rule()
    def restart_control_plane(self) -> None:
        self._step("restart the control plane")
        self.plane.start()
        self.is_up = True
        self._check(lambda: wait_until(lambda: None if self.plane.probe()[0] else "unreachable",
                                       30, "the restarted gateway listens"))
        self._close("unreachable")

    @rule(index=st.integers(0, 3))
    def kill_serving_process(self, index: int) -> None:
        """Kill the ``index``-th (modulo) recorded process, oldest version first."""
        records = self.plane.records()
        if not records:
            self._step("kill -9 a serving process: none")
            return
        pid = sorted(records, key=records.__getitem__)[index % len(records)]
        version, port = records[pid]
        self._step(f"kill -9 serving v{version} (pid {pid})")
        if is_ready(port):  # it may be routed: until a successor is ready, requests fail
            self.windows.append(Window("outage"))
        os.kill(pid, signal.SIGKILL)

    @precondition(lambda self: self.is_up and self._is_desired_good())
    @rule()
    def wait_for_rollout(self) -> None:
        self._step(f"wait for v{self.version}")
        self._check(lambda: wait_until(self._rolled_out, RECOVERY_S,
                                       f"v{self.version} alone serves"))

    @invariant()
    def keeps_its_promises(self) -> None:
        self._check(self._check_answers)
        self._check(lambda: wait_until(self._orphans, CONSISTENT_S,
                                       "every serving process is recorded"))
        if self.is_up:
            since = time.time()
            self._check(lambda: wait_until(lambda: self._mismatch(since), CONSISTENT_S,
                                           "status == reality"))
            self._check(self._check_serving)
            self._check(self._check_answers)

    def teardown(self) -> None:
        try:
            if self.watch is not None:
                self.watch.close()
            self.plane.kill9()
        finally:
            for pid in fake_server_pids(self.home) | set(self.plane.records()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(self.home, ignore_errors=True)
        assert self.violation is None, self.violation

    def _step(self, text: str) -> None:
        self.steps.append(text)

    def _pause(self, seconds: float) -> None:
        if self.violation is None:
            time.sleep(seconds)

    def _check(self, check: Callable[[], None]) -> None:
        """Run ``check`` unless a promise is already broken; keep the first broken one."""
        if self.violation is not None:
            return
        try:
            check()
        except AssertionError as error:
            self.violation = f"after {' -> '.join(self.steps)}: {error}"

    def _is_desired_good(self) -> bool:
        return self.plane.kinds[self.version] not in BROKEN

    def _close(self, kind: str) -> None:
        for window in self.windows:
            if window.kind == kind and window.closed is None:
                window.closed = time.monotonic()

    def _check_answers(self) -> None:
        """Traffic never went to an instance not yet ready, and every answer was a 200 or
        excused by a window it overlapped."""
        assert self.watch is not None
        assert not self.watch.unready_routes, self.watch.unready_routes[:3]
        answers = self.watch.answers[self.checked:]
        self.checked += len(answers)
        failed = [a for a in answers if a.status != 200
                  and not any(w.covers(a.start, a.end, a.status) for w in self.windows)]
        assert not failed, f"{len(failed)} unexcused failures, first {failed[:3]}"

    def _orphans(self) -> str | None:
        orphans = fake_server_pids(self.home) - set(self.plane.records())
        return f"unrecorded serving processes {sorted(orphans)}" if orphans else None

    def _mismatch(self, since: float) -> str | None:
        """What the controller believes and what runs differ in (None: they agree)."""
        state = self.plane.status(since)
        if state is None:
            return "no status from the running controller"
        live = fake_server_pids(self.home)
        observed = {o["pid"] for o in state["observed"]
                    if o["state"] in ("starting", "ready", "stopping")}
        if observed != live:
            return f"observed {sorted(observed)}, running {sorted(live)}"
        ready = {o["url"] for o in state["observed"] if o["state"] == "ready"}
        backends = state["routes"].get(NAME, [])
        routed = {b["url"] for b in backends}
        if not routed <= ready:
            return f"routed {sorted(routed)} but observed ready {sorted(ready)}"
        shown = [(s["version"], {t["version"] for t in s["traffic"]})
                 for s in state["status"] if s["name"] == NAME]
        if shown != [(self.version, {b["version"] for b in backends})]:
            return f"status shows {shown}: desired v{self.version}, routed {backends}"
        return None

    def _check_serving(self) -> None:
        """The stable URL answers 200 unless a killed ready process has no successor yet."""
        status, body = self.plane.probe()
        if status != 200 and self._is_outage() and self._is_desired_good():
            wait_until(self._answers_200, RECOVERY_S, "a ready successor serves")
            status, body = self.plane.probe()
        if status == 200:
            self._close("outage")
            records = self.plane.records()
            assert records.get(body["pid"], (None,))[0] == body["version"], (body, records)
        else:
            assert self._is_outage(), f"a ready backend existed, the stable URL said {status}"

    def _is_outage(self) -> bool:
        return any(w.kind == "outage" and w.closed is None for w in self.windows)

    def _answers_200(self) -> str | None:
        status, _ = self.plane.probe()
        return None if status == 200 else f"answered {status}"

    def _rolled_out(self) -> str | None:
        state = self.plane.status(0.0)
        if state is None:
            return "no status"
        routed = [b["version"] for b in state["routes"].get(NAME, [])]
        running = {version for version, _ in self.plane.records().values()}
        if routed != [self.version] or running != {self.version}:
            return f"routed {routed}, running {sorted(running)}"
        return None


RUN = settings(deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
"""No shrinking: a step takes seconds of real processes, and a broken promise already names
every step before it."""


SCENARIOS: dict[str, list[tuple[Any, ...]]] = {
    "broken-version-adopted": [("promote_broken", "inf", 0.5), ("crash_control_plane", 0.0)],
    "crash-while-loading": [("promote", "4", 0.5), ("crash_control_plane", 0.0),
                            ("wait_for_rollout",)],
    "model-killed-while-down": [("kill_control_plane",), ("kill_serving_process", 0),
                                ("restart_control_plane",), ("wait_for_rollout",)],
}
"""Step sequences every run includes, the random ones finding them only now and then."""


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS)
def test_crash_scenario_keeps_a_ready_backend(steps: list[tuple[Any, ...]]) -> None:
    machine = Rollouts()
    try:
        machine.serve_v1()
        machine.keeps_its_promises()
        for name, *args in steps:
            getattr(machine, name)(*args)
            machine.keeps_its_promises()
    finally:
        machine.teardown()


@pytest.mark.timeout(600)
def test_rollouts_keep_a_ready_backend_through_crashes() -> None:
    run_state_machine_as_test(Rollouts, settings=settings(
        RUN, max_examples=4, stateful_step_count=10))  # 40 x 20 under `make bench`


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_many_rollouts_keep_a_ready_backend_through_crashes() -> None:
    run_state_machine_as_test(Rollouts, settings=settings(
        RUN, max_examples=40, stateful_step_count=20))
