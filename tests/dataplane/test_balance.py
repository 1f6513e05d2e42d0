"""Connection balancing between workers: the choice, the shared counts, the descriptor handoff."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import uvicorn

from greenbutton.dataplane.balance import Slots, WorkerBalancer, handoff_target, received_fds


@pytest.mark.parametrize(
    ("loads", "alive", "me", "expected"),
    [
        ([0, 0], [True, True], 0, None),  # balanced: keep
        ([1, 0], [True, True], 0, None),  # one more than the sibling: still keep
        ([2, 0], [True, True], 0, 1),  # two more: hand it on
        ([7, 0], [True, False], 0, None),  # the only sibling is dead or draining
        ([3, 0], [False, True], 0, 1),  # a draining worker still hands its accepts on
        ([4, 3, 2], [True, True, True], 0, 2),  # the least loaded
        ([4, 2, 2], [True, True, True], 0, 1),  # the lowest index among equals
        ([5, 3, 0], [True, True, False], 0, 1),  # not the dead one, however idle
        ([4, 3, 0], [True, True, False], 0, None),
        ([0, 5, 9], [True, True, True], 2, 0),
        ([3], [True], 0, None),  # no sibling at all
    ],
)
def test_handoff_target(loads: list[int], alive: list[bool], me: int,
                        expected: int | None) -> None:
    assert handoff_target(loads, alive, me) == expected


def test_slot_load_counts_connections_on_their_way() -> None:
    slots = Slots(2)
    try:
        first, second = WorkerBalancer(slots, 0), WorkerBalancer(slots, 1)
        slots.alive[:] = 1
        first.opened()
        first.opened()
        assert slots.target(0) == 1
        slots.sent[0, 1] += 1  # sent, not yet taken: already counted as the sibling's
        assert slots.loads() == [2, 1] and slots.target(0) is None
        slots.taken[1] += 1
        second.opened()
        assert slots.loads() == [2, 1]
        second.drain()
        first.opened()
        assert slots.target(0) is None  # a draining sibling takes nothing
        slots.reset(0)  # the supervisor, after the worker in slot 0 died
        assert slots.loads() == [0, 1] and slots.alive.tolist() == [0, 0]
    finally:
        slots.close()


def accepted_transport(sock: socket.socket) -> asyncio.BaseTransport:
    """What a uvloop transport tells about its socket."""
    return asyncio.BaseTransport({"socket": sock})


def test_handed_on_connection_keeps_its_unread_bytes_and_is_not_ended() -> None:
    slots = Slots(2)
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # in the kernel before the handoff
        accepted, _ = listener.accept()
        slots.alive[:] = 1
        for _ in range(2):
            WorkerBalancer(slots, 0).opened()
        assert WorkerBalancer(slots, 0).hand_on(accepted_transport(accepted))
        accepted.close()  # what uvloop's close does with this worker's descriptor
        assert slots.sent[0, 1] == 1
        client.setblocking(False)
        with pytest.raises(BlockingIOError):  # no FIN, no RST: the connection lives on
            client.recv(1)
        _, ancillary, _, _ = slots.inbox(1).recvmsg(1, socket.CMSG_SPACE(4))
        fds = received_fds(ancillary)
        assert len(fds) == 1
        with socket.socket(fileno=fds[0]) as received:
            received.settimeout(5)
            assert received.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
            received.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            client.settimeout(5)
            assert client.recv(100) == b"HTTP/1.1 204 No Content\r\n\r\n"
    finally:
        client.close()
        listener.close()
        slots.close()


def test_full_inbox_keeps_the_connection() -> None:
    slots = Slots(2)
    listener = socket.create_server(("127.0.0.1", 0))
    clients = []
    try:
        slots.alive[:] = 1
        slots.opened[0] = 1000  # always over the sibling
        balancer = WorkerBalancer(slots, 0)
        sent = 0
        for _ in range(2000):  # the sibling never reads: its inbox fills up
            clients.append(socket.create_connection(listener.getsockname(), timeout=5))
            accepted, _ = listener.accept()
            with accepted:
                if not balancer.hand_on(accepted_transport(accepted)):
                    break
                sent += 1
        else:
            pytest.fail("the inbox never filled up")
        assert slots.sent[0, 1] == sent > 0  # the refused one is not counted
    finally:
        for client in clients:
            client.close()
        listener.close()
        slots.close()


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_received_connection_is_served_and_closed_after_its_answer_once_draining() -> None:
    slots = Slots(2)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    receiver = WorkerBalancer(slots, 1)
    config = uvicorn.Config(answer_ok, http=receiver.protocol_class(), lifespan="off",
                            log_config=None)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writers: list[asyncio.StreamWriter] = []

    async def handed_on() -> asyncio.StreamReader:  # a sibling accepts it and hands it on
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        writers.append(writer)
        writer.write(request)  # before the handoff
        await writer.drain()
        accepted, _ = await loop.sock_accept(listener)
        with accepted:
            assert WorkerBalancer(slots, 0).hand_on(accepted_transport(accepted))
        return reader

    try:
        receiver.start(server)
        assert slots.alive.tolist() == [0, 1]
        slots.alive[0], slots.opened[0] = 1, 2
        reader = await handed_on()
        answer = await asyncio.wait_for(reader.readuntil(b"ok"), timeout=5)
        assert answer.startswith(b"HTTP/1.1 200")
        assert slots.loads() == [2, 1] and slots.taken[1] == 1
        writers[0].write(request)  # kept alive
        assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
        receiver.drain()
        assert slots.alive.tolist() == [1, 0]
        slots.alive[1], slots.opened[0] = 1, 3  # a sibling has not yet seen the drain
        late = await handed_on()
        slots.alive[1] = 0
        writers[0].write(request)
        for stream in (reader, late):  # answered, then closed: the drain goes on
            answer = await asyncio.wait_for(stream.read(), timeout=5)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
        deadline = loop.time() + 5
        while slots.opened[1] and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert slots.loads() == [3, 0] and slots.taken[1] == 2
    finally:
        loop.remove_reader(slots.inbox(1).fileno())
        for writer in writers:
            writer.close()
        listener.close()
        slots.close()


def test_a_promise_sets_the_slots_deadline_and_a_reset_clears_it() -> None:
    slots = Slots(2)
    try:
        before = time.monotonic_ns()
        WorkerBalancer(slots, 1).promise(2.5)
        after = time.monotonic_ns()
        assert slots.deadline[0] == 0
        assert before + 2.5e9 <= slots.deadline[1] <= after + 2.5e9
        assert slots.loads() == [0, 0]  # the deadlines are not counters of the loads
        slots.reset(1)
        assert slots.deadline[1] == 0
    finally:
        slots.close()
