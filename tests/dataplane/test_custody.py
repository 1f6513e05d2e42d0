"""The supervisor's custody of connections: the table, the duplicates, a dead worker's callers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from mlflow.models import infer_signature
from served_process import serving

from greenbutton.config import Settings
from greenbutton.dataplane.balance import Slots, WorkerBalancer
from greenbutton.dataplane.custody import (
    FREE,
    IDLE,
    IN_REQUEST,
    RESPONDING,
    Custodian,
    CustodyTable,
    WorkerCustody,
    died_response,
)


@contextlib.contextmanager
def custody(slots: int = 1) -> Iterator[tuple[CustodyTable, Custodian]]:
    """A table and the supervisor's side of it, in this process."""
    table = CustodyTable(slots, capacity=8)
    selector = selectors.DefaultSelector()
    custodian = Custodian(table, selector)
    try:
        yield table, custodian
    finally:
        custodian.close()
        selector.close()
        table.close()


@contextlib.contextmanager
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A client socket and the server's end of it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        served, _ = listener.accept()
    with client, served:
        yield client, served


def is_open(client: socket.socket) -> bool:
    """No FIN and no bytes have reached ``client``."""
    client.setblocking(False)
    try:
        client.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        client.settimeout(5)
    return False


def test_died_response_is_a_503_with_retry_after_and_the_error_body() -> None:
    head, _, body = died_response().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["error"]["type"] == "worker_died"


def test_released_connection_ends_when_the_worker_closes_it() -> None:
    with custody() as (table, custodian), connection() as (client, served):
        worker = WorkerCustody(table, 0)
        entry = worker.keep(served.fileno())
        custodian.receive(0)
        assert table.states[entry] == IDLE and custodian.held_count() == 1
        served.close()  # the supervisor's duplicate keeps the connection open
        assert is_open(client)
        worker.release(entry)
        custodian.receive(0)
        assert table.states[entry] == FREE and custodian.held_count() == 0
        assert client.recv(1) == b""


def test_sweep_closes_a_duplicate_whose_release_was_lost() -> None:
    with custody() as (table, custodian), connection() as (client, served):
        worker = WorkerCustody(table, 0)
        entry = worker.keep(served.fileno())
        custodian.receive(0)
        served.close()
        worker.release(entry, is_held=False)  # as if the message could not be sent
        custodian.receive(0)
        assert custodian.held_count() == 1
        custodian._swept_at = 0.0  # due now
        custodian.sweep()
        assert custodian.held_count() == 0 and client.recv(1) == b""


def test_entry_kept_again_closes_the_duplicate_of_its_previous_connection() -> None:
    with custody() as (table, custodian), connection() as (first, served_first), \
            connection() as (_, served_second):
        worker = WorkerCustody(table, 0)
        entry = worker.keep(served_first.fileno())
        served_first.close()
        worker.release(entry, is_held=False)
        assert worker.keep(served_second.fileno()) == entry  # reused before any sweep
        custodian.receive(0)
        assert custodian.held_count() == 1 and first.recv(1) == b""


@pytest.mark.parametrize(
    ("state", "sent", "answered"),
    [
        (IN_REQUEST, b"", True),  # request read, nothing answered: 503
        (IDLE, b"GET / HTTP/1.1\r\n\r\n", True),  # a request waits unread: 503
        (IDLE, b"", False),  # between requests: closed
        (RESPONDING, b"", False),  # half an answer: closed, nothing added
    ],
)
def test_settle_answers_a_dead_workers_unanswered_requests(
    state: int, sent: bytes, answered: bool
) -> None:
    with custody() as (table, custodian), connection() as (client, served):
        entry = WorkerCustody(table, 0).keep(served.fileno())
        client.sendall(sent)
        time.sleep(0.05)  # the bytes are in the server's socket
        table.states[entry] = state
        served.close()  # the worker died
        settled = custodian.settle(0)
        assert (settled.answered, settled.idle + settled.cut) == (answered, not answered)
        received = b""
        while chunk := client.recv(4096):
            received += chunk
        assert received == (died_response() if answered else b"")
        assert custodian.held_count() == 0 and table.states[entry] == FREE


async def answer_when_told(scope: Any, receive: Any, send: Any) -> None:
    """Starts its answer when ``scope["state"]["start"]`` is set, ends it on ``"end"``."""
    if scope["type"] != "http":
        return
    events = scope["state"]
    await events["start"].wait()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await events["end"].wait()
    await send({"type": "http.response.body", "body": b"ok"})


async def test_protocol_marks_request_answer_and_idle_in_the_table() -> None:
    slots = Slots(1)
    table = CustodyTable(1, capacity=8)
    config = uvicorn.Config(answer_when_told, lifespan="off", log_config=None,
                            http=WorkerBalancer(slots, 0, WorkerCustody(table, 0)).protocol_class())
    config.load()
    server = uvicorn.Server(config)
    start, end = asyncio.Event(), asyncio.Event()
    server.lifespan = config.lifespan_class(config)
    server.lifespan.state.update(start=start, end=end)
    listener = socket.create_server(("127.0.0.1", 0))
    await server.startup(sockets=[listener])

    async def state_becomes(expected: int) -> None:
        for _ in range(500):
            if table.states[0] == expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"state {table.states[0]}, expected {expected}")

    try:
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        await state_becomes(IDLE)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await state_becomes(IN_REQUEST)
        start.set()
        await state_becomes(RESPONDING)
        end.set()
        await asyncio.wait_for(reader.readuntil(b"ok"), timeout=5)
        await state_becomes(IDLE)
        writer.close()
        await state_becomes(FREE)
    finally:
        await server.shutdown()
        listener.close()
        table.close()
        slots.close()


class SleepyModel(mlflow.pyfunc.PythonModel):
    """Sleeps a minute on a row whose first pixel is -1: in flight long enough to be killed."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        if model_input.iloc[0, 0] == -1:
            time.sleep(60)
        return np.zeros(len(model_input), dtype=np.int64)


FAST_ROW, SLOW_ROW = [0.0] * 64, [-1.0] + [0.0] * 63


@dataclass
class TwoWorkers:
    """A 2-worker ``greenbutton serve`` of SleepyModel, seen from /proc."""

    process: subprocess.Popen[bytes]
    port: int

    def workers(self, killed: int | None = None) -> list[int]:
        """Its two workers, once both exist (and ``killed`` has been replaced)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 30
        while len(pids := [int(pid) for pid in children.read_text().split()]) != 2 \
                or killed in pids:
            assert time.monotonic() < deadline, pids
            time.sleep(0.05)
        return pids

    def kill(self, worker: int) -> int:
        """SIGKILL ``worker``; the worker started in its place."""
        before = set(self.workers())
        os.kill(worker, signal.SIGKILL)
        return (set(self.workers(worker)) - before).pop()

    def holder(self, client: socket.socket) -> int:
        """The worker serving ``client``'s connection (once it has been accepted)."""
        deadline = time.monotonic() + 10
        while True:
            connection = server_sockets(self.port, client.getsockname()[1])
            holders = [pid for pid in self.workers() if connection & sockets_of(pid)]
            if len(holders) == 1:
                return holders[0]
            assert time.monotonic() < deadline, holders
            time.sleep(0.05)

    def connections_of(self, pid: int) -> int:
        """How many TCP connections to the server ``pid`` holds."""
        return len(server_sockets(self.port) & sockets_of(pid))


def server_sockets(port: int, peer_port: int | None = None) -> set[str]:
    """The connections on local ``port`` (from ``peer_port``), as /proc/<pid>/fd names them."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
        if local == port and fields[3] != "0A" and peer_port in (None, remote):
            found.add(f"socket:[{fields[9]}]")
    return found


def sockets_of(pid: int) -> set[str]:
    """What the descriptors of ``pid`` point to."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held.add(os.readlink(fd))
    return held


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory,
                digits_frame: pd.DataFrame) -> Iterator[TwoWorkers]:
    """One server for the module's tests; each leaves it with two live workers."""
    home = tmp_path_factory.mktemp("custody")
    settings = Settings(home=home / "gb", _env_file=None)  # type: ignore[call-arg]
    module = sys.modules[SleepyModel.__module__]
    cloudpickle.register_pickle_by_value(module)
    try:
        mlflow.pyfunc.save_model(home / "sleepy", python_model=SleepyModel(),
                                 signature=infer_signature(digits_frame[:2]),
                                 input_example=digits_frame[:1])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    with serving(settings, str(home / "sleepy")) as (process, port):
        server = TwoWorkers(process, port)
        deadline = time.monotonic() + 120
        while exchange(server.port, "GET", "/health/ready")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield server


def send(client: socket.socket, method: str, path: str, row: list[float] | None = None,
         *, is_last: bool = False) -> None:
    """Write one HTTP/1.1 request (``row`` as /predict inputs)."""
    body = json.dumps({"inputs": [row]}).encode() if row is not None else b""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n")
    if is_last:
        head += "Connection: close\r\n"
    client.sendall(head.encode() + b"\r\n" + body)


def receive(client: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one answer: status, headers (lower-case names), body."""
    stream = client.makefile("rb")
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline().decode().strip()):
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


def exchange(port: int, method: str, path: str,
             row: list[float] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        send(client, method, path, row)
        return receive(client)


@pytest.mark.slow
def test_request_in_flight_on_a_killed_worker_gets_503_then_its_replacement_answers(
    two_workers: TwoWorkers
) -> None:
    with socket.create_connection(("127.0.0.1", two_workers.port), timeout=10) as client:
        send(client, "POST", "/predict", SLOW_ROW)
        time.sleep(0.5)  # read and in the model (a handoff happens before reading)
        replacement = two_workers.kill(two_workers.holder(client))
        status, headers, body = receive(client)
        assert client.recv(1) == b""
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error"]["type"] == "worker_died"
    deadline = time.monotonic() + 30
    while True:  # new connections, until the replacement takes one
        with socket.create_connection(("127.0.0.1", two_workers.port), timeout=10) as client:
            send(client, "POST", "/predict", FAST_ROW)
            status = receive(client)[0]
            if two_workers.holder(client) == replacement:
                break
            assert status == 200 and time.monotonic() < deadline
    assert status == 200


@pytest.mark.slow
def test_idle_connection_of_a_killed_worker_is_closed_at_once(two_workers: TwoWorkers) -> None:
    with socket.create_connection(("127.0.0.1", two_workers.port), timeout=10) as client:
        send(client, "GET", "/health/live")
        assert receive(client)[0] == 200
        killed = two_workers.holder(client)
        os.kill(killed, signal.SIGKILL)
        client.settimeout(2)
        assert client.recv(1) == b""  # a FIN: the client's next request reconnects
    two_workers.workers(killed)


@pytest.mark.slow
def test_connection_closed_by_the_server_reaches_the_client_at_once(
    two_workers: TwoWorkers
) -> None:
    waited_s = 0.0
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", two_workers.port), timeout=10) as client:
            send(client, "GET", "/health/live", is_last=True)
            assert receive(client)[0] == 200
            started = time.monotonic()
            assert client.recv(1) == b""
            waited_s += time.monotonic() - started
    assert waited_s < 1.0  # (a duplicate closed only by the sweep would take ~0.25 s each)


@pytest.mark.slow
def test_supervisor_holds_no_descriptor_after_its_connections_closed(
    two_workers: TwoWorkers
) -> None:
    supervisor = two_workers.process.pid
    two_workers.workers()
    deadline = time.monotonic() + 10
    while two_workers.connections_of(supervisor):  # earlier tests' connections are gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    baseline = len(sockets_of(supervisor))
    for batch in range(20):  # 200 connections, 10 at once, half closed by the server
        clients = [socket.create_connection(("127.0.0.1", two_workers.port), timeout=10)
                   for _ in range(10)]
        for client in clients:
            send(client, "GET", "/health/live", is_last=batch % 2 == 0)
        for client in clients:
            assert receive(client)[0] == 200
            client.close()
    deadline = time.monotonic() + 5
    while len(sockets_of(supervisor)) != baseline:
        assert time.monotonic() < deadline, (len(sockets_of(supervisor)), baseline)
        time.sleep(0.05)


@pytest.mark.slow
def test_replacement_worker_closes_the_supervisors_duplicates(two_workers: TwoWorkers) -> None:
    clients = [socket.create_connection(("127.0.0.1", two_workers.port), timeout=10)
               for _ in range(4)]
    try:
        for client in clients:
            send(client, "GET", "/health/live")
        for client in clients:
            assert receive(client)[0] == 200
        holders = [two_workers.holder(client) for client in clients]
        killed = min(two_workers.workers(), key=holders.count)
        kept = [client for client, holder in zip(clients, holders, strict=True)
                if holder != killed]  # held by the supervisor when it forks the replacement
        replacement = two_workers.kill(killed)
        time.sleep(0.5)
        assert kept and two_workers.connections_of(replacement) == 0
        send(kept[0], "GET", "/health/live", is_last=True)
        assert receive(kept[0])[0] == 200
        started = time.monotonic()
        assert kept[0].recv(1) == b"" and time.monotonic() - started < 1.0
    finally:
        for client in clients:
            client.close()
