"""The watchdog: running model calls, stuck ones found with their stack, the gauge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from served_process import serving

from greenbutton.calls import ModelCalls
from greenbutton.config import Settings
from greenbutton.dataplane.watchdog import DEADLINE_SLACK_S, EXIT_STUCK, StuckCall, Watchdog

OVERRUNNING = "greenbutton_model_calls_overrunning"


def hang_in_model_code(calls: ModelCalls, release: threading.Event) -> None:
    """A model call that runs until ``release`` (its name is looked for in the stack)."""
    token = calls.begin()
    try:
        release.wait(30)
    finally:
        calls.end(token)


@pytest.fixture
def hanging() -> Iterator[tuple[ModelCalls, threading.Thread]]:
    """A call running in a thread of its own, released at the end of the test."""
    calls, release = ModelCalls(), threading.Event()
    thread = threading.Thread(target=hang_in_model_code, args=(calls, release))
    thread.start()
    deadline = time.monotonic() + 5
    while not calls.snapshot() and time.monotonic() < deadline:
        time.sleep(0.001)
    yield calls, thread
    release.set()
    thread.join(5)


def test_model_calls_records_each_call_until_it_ends() -> None:
    calls = ModelCalls()
    first, second = calls.begin(), calls.begin()
    assert [ident for _, ident in calls.snapshot()] == [threading.get_ident()] * 2
    calls.end(first)
    assert len(calls.snapshot()) == 1
    calls.end(second)
    calls.end(second)  # ending twice is harmless
    assert calls.snapshot() == []


def test_a_threaded_call_overruns_after_the_timeout_and_is_stuck_after_stuck_call_s(
    hanging: tuple[ModelCalls, threading.Thread],
) -> None:
    calls, thread = hanging
    registry = CollectorRegistry()
    watchdog = Watchdog(calls.snapshot, request_timeout_s=1.0, stuck_call_s=2.0,
                        on_stuck=lambda call: None, registry=registry)
    watchdog.loop_thread = threading.get_ident()  # not the hanging thread
    started = calls.snapshot()[0][0]
    assert watchdog.check(now=started + 0.5) is None
    assert registry.get_sample_value(OVERRUNNING) == 0
    assert watchdog.check(now=started + 1.5) is None  # its caller got a 504; it may finish
    assert registry.get_sample_value(OVERRUNNING) == 1
    stuck = watchdog.check(now=started + 2.5)
    assert stuck is not None
    assert stuck.thread_id == thread.ident and not stuck.blocks_loop
    assert stuck.running_s == pytest.approx(2.5)
    assert "hang_in_model_code" in stuck.stack  # where the model hangs, for its author
    assert "after its request timed out" in stuck.describe()


def test_a_call_on_the_request_loop_is_stuck_at_the_request_timeout(
    hanging: tuple[ModelCalls, threading.Thread],
) -> None:
    calls, thread = hanging
    watchdog = Watchdog(calls.snapshot, request_timeout_s=1.0, stuck_call_s=60.0,
                        on_stuck=lambda call: None)
    watchdog.loop_thread = thread.ident  # as if that thread ran the event loop
    started = calls.snapshot()[0][0]
    assert watchdog.check(now=started + 0.9) is None
    stuck = watchdog.check(now=started + 1.1)
    assert stuck is not None and stuck.blocks_loop
    assert "answers nothing" in stuck.describe()


def test_the_watchdog_thread_reports_a_stuck_call_once(
    hanging: tuple[ModelCalls, threading.Thread],
) -> None:
    calls, thread = hanging
    reported: list[StuckCall] = []
    fired = threading.Event()
    registry = CollectorRegistry()

    def on_stuck(call: StuckCall) -> None:
        reported.append(call)
        beats_when_stuck.append(len(beats))
        fired.set()

    beats: list[float] = []
    beats_when_stuck: list[int] = []
    watchdog = Watchdog(calls.snapshot, request_timeout_s=0.1, stuck_call_s=0.3,
                        on_stuck=on_stuck, on_check=lambda: beats.append(time.monotonic()),
                        registry=registry)
    assert watchdog.interval_s == pytest.approx(0.025)  # a quarter of a short timeout
    watchdog.start(loop_thread=threading.get_ident())
    assert len(beats) == 1  # the first heartbeat at once, before any check
    try:
        assert fired.wait(5)
        time.sleep(0.2)  # several more intervals: still reported once
    finally:
        watchdog.stop()
    assert len(reported) == 1 and reported[0].thread_id == thread.ident
    assert beats_when_stuck[0] > 1 and len(beats) == beats_when_stuck[0]  # none once stuck
    assert reported[0].running_s > 0.3
    assert watchdog.stuck is reported[0]
    assert registry.get_sample_value(OVERRUNNING) == 0  # its calls leave with the worker


def test_a_finished_call_is_never_stuck() -> None:
    calls = ModelCalls()
    calls.end(calls.begin())
    watchdog = Watchdog(calls.snapshot, request_timeout_s=0.1, stuck_call_s=0.2,
                        on_stuck=lambda call: None)
    assert watchdog.check(now=time.monotonic() + 100) is None


def test_stuck_call_defaults_to_twice_the_timeout_and_may_not_be_shorter() -> None:
    settings = Settings(_env_file=None, serving={"request_timeout_s": 5})  # type: ignore[call-arg]
    assert settings.serving.stuck_after_s == 10
    with pytest.raises(ValidationError, match="stuck_call_s"):
        Settings(_env_file=None,  # type: ignore[call-arg]
                 serving={"request_timeout_s": 5, "stuck_call_s": 4})


class HangingModel(mlflow.pyfunc.PythonModel):
    """Answers zeros after ``delay_s``, but hangs on a negative first pixel: for minutes, or
    (``holds_lock``) first for about a minute in a regular expression, which never lets the
    interpreter lock go (bounded: should the worker outlive its test, it ends by itself)."""

    def __init__(self, delay_s: float, holds_lock: bool = False) -> None:
        self.delay_s, self.holds_lock = delay_s, holds_lock

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        if (model_input.iloc[:, 0] < 0).any():
            if self.holds_lock:
                re.match(r"(a+)+$", "a" * 30 + "b")  # backtracks ~2^30 steps in C
            hang_for_minutes()
        time.sleep(self.delay_s)
        return np.zeros(len(model_input), dtype=np.int64)


def hang_for_minutes() -> None:
    time.sleep(300)


def save_hanging_model(path: Path, frame: pd.DataFrame, delay_s: float,
                       holds_lock: bool = False) -> str:
    module = sys.modules[HangingModel.__module__]
    cloudpickle.register_pickle_by_value(module)  # the serving process cannot import tests
    try:
        mlflow.pyfunc.save_model(path, python_model=HangingModel(delay_s, holds_lock),
                                 signature=infer_signature(frame[:2]), input_example=frame[:1])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    return str(path)


@contextlib.asynccontextmanager
async def ready_client(port: int) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server on ``port`` once it is ready (a new connection per request)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 limits=httpx.Limits(max_keepalive_connections=0)) as client:
        deadline = time.monotonic() + 120
        while (await client.get("/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, "the server never got ready"
            await asyncio.sleep(0.05)
        yield client


def row_and_hanging_row(frame: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """``inputs`` of one row the model answers and of one it hangs on."""
    rows = frame[:1].to_numpy()
    hung = rows.copy()
    hung[0, 0] = -1.0
    return rows.tolist(), hung.tolist()


def workers_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def until_replaced(supervisor: int, before: list[str]) -> None:
    """Until a worker not in ``before`` runs under ``supervisor`` (at most 30 s)."""
    deadline = time.monotonic() + 30
    while len(set(workers_of(supervisor)) - set(before)) < 1:
        assert time.monotonic() < deadline, "the worker was not replaced"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_call_stuck_on_the_request_loop_gets_its_worker_replaced(
    settings: Settings, tmp_path: Path, digits_frame: pd.DataFrame
) -> None:
    # a fast model runs on the request loop: hanging there, it blocks its whole worker
    uri = save_hanging_model(tmp_path / "fast", digits_frame, delay_s=0.0)
    settings.serving.request_timeout_s = 1.0
    rows, hung = row_and_hanging_row(digits_frame)
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr, serving(settings, uri, workers=2, stderr=stderr) as (
            process, port):
        async with ready_client(port) as client:
            before = workers_of(process.pid)
            for _ in range(60):  # each worker's average call drops below the inline budget
                assert (await client.post("/predict", json={"inputs": rows})).status_code == 200
            started = time.monotonic()
            response = await client.post("/predict", json={"inputs": hung})
            # its worker left after the timeout; the supervisor answered for it
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert time.monotonic() - started < 10
            for _ in range(10):  # the other worker and the replacement answer
                ok = await client.post("/predict", json={"inputs": rows})
                assert ok.status_code == 200, ok.text
            await until_replaced(process.pid, before)
            assert len(workers_of(process.pid)) == 2
            # the supervisor's folder (model, metrics of every worker) outlived the stuck one
            assert (await client.get("/metrics")).status_code == 200
    text = log.read_text()
    assert "on the request loop" in text and "hang_for_minutes" in text, text[-3000:]
    assert f"was stuck in a model call (exit {EXIT_STUCK})" in text


@pytest.mark.slow
async def test_a_call_holding_the_interpreter_lock_gets_its_worker_killed_and_replaced(
    settings: Settings, tmp_path: Path, digits_frame: pd.DataFrame
) -> None:
    # no thread of that worker runs, its watchdog included: the supervisor sees it miss the
    # deadline the watchdog renews (stuck_call_s + DEADLINE_SLACK_S ahead) and kills it
    uri = save_hanging_model(tmp_path / "locking", digits_frame, delay_s=0.0, holds_lock=True)
    settings.serving.request_timeout_s = 1.0
    settings.serving.stuck_call_s = 1.0
    rows, hung = row_and_hanging_row(digits_frame)
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr, serving(settings, uri, workers=2, stderr=stderr) as (
            process, port):
        async with ready_client(port) as client:
            before = workers_of(process.pid)
            started = time.monotonic()
            response = await client.post("/predict", json={"inputs": hung})
            assert response.status_code == 503, response.text  # from the supervisor
            assert time.monotonic() - started < 1.0 + DEADLINE_SLACK_S + 5
            await until_replaced(process.pid, before)
            for _ in range(10):
                ok = await client.post("/predict", json={"inputs": rows})
                assert ok.status_code == 200, ok.text
    assert "missed its watchdog's deadline" in log.read_text(), log.read_text()[-3000:]


@pytest.mark.slow
async def test_a_threaded_call_gets_a_504_then_its_worker_drains_and_exits_4(
    settings: Settings, tmp_path: Path, digits_frame: pd.DataFrame
) -> None:
    # a slower model runs in a thread: its caller gets a 504, the worker keeps serving
    uri = save_hanging_model(tmp_path / "slow", digits_frame, delay_s=0.005)
    settings.serving.request_timeout_s = 1.0
    settings.serving.stuck_call_s = 3.0
    rows, hung = row_and_hanging_row(digits_frame)
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr, serving(settings, uri, workers=1, exit_code=EXIT_STUCK,
                                           stderr=stderr) as (process, port):
        async with ready_client(port) as client:
            response = await client.post("/predict", json={"inputs": hung})
            assert response.status_code == 504, response.text
            assert "1.0 s" in response.json()["error"]["message"]
            ok = await client.post("/predict", json={"inputs": rows})
            assert ok.status_code == 200  # the loop is free: the worker still serves
            deadline = time.monotonic() + 1.5  # the gauge follows within a check interval
            while "greenbutton_model_calls_overrunning 1.0" not in (
                    metrics := (await client.get("/metrics")).text):
                assert time.monotonic() < deadline, metrics[-1000:]
                await asyncio.sleep(0.05)
            # past stuck_call_s the worker drains and exits, for its supervisor to replace
            assert await asyncio.to_thread(process.wait, 30) == EXIT_STUCK
    text = log.read_text()
    assert "after its request timed out" in text and "hang_for_minutes" in text, text[-3000:]


@pytest.mark.slow
async def test_sigterm_abandons_a_call_whose_request_timed_out_and_exits_0(
    settings: Settings, tmp_path: Path, digits_frame: pd.DataFrame
) -> None:
    # the CLI, one worker: its model folder (the prefetch's) must go all the same
    uri = save_hanging_model(tmp_path / "slow", digits_frame, delay_s=0.005)
    settings.serving.request_timeout_s = 1.0
    settings.serving.stuck_call_s = 120.0  # not stuck yet: the drain must not wait for it
    settings.serving.workers = 1
    _, hung = row_and_hanging_row(digits_frame)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    log = tmp_path / "serve.log"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "greenbutton", "serve", uri, "--fd", str(listener.fileno())],
            pass_fds=[listener.fileno()], stderr=stderr,
            env={**os.environ, **settings.environ(), "TMPDIR": str(temporary)})
    listener.close()
    try:
        async with ready_client(port) as client:
            assert any(temporary.iterdir())  # the model's files, fetched for this server
            response = await client.post("/predict", json={"inputs": hung})
            assert response.status_code == 504
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        process.kill()
        process.wait()
    assert "1 model calls still running" in log.read_text(), log.read_text()[-3000:]
    assert list(temporary.iterdir()) == []
