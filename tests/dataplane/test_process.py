"""build_serving_app and run: background loading, and a real uvicorn on an inherited socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from served_process import serving
from starlette.applications import Starlette

from greenbutton.config import Settings
from greenbutton.dataplane.process import build_serving_app
from greenbutton.errors import ModelNotFound


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/health/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def started(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def test_build_serving_app_loads_alias_in_background(
    digits_store: Settings, digits_frame: pd.DataFrame
) -> None:
    uri = digits_store.mlflow.tracking_uri
    MlflowClient(uri, uri).set_registered_model_alias("digits", "production", "1")
    app = build_serving_app(digits_store, "models:/digits@production")
    async with started(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await wait_ready(client)).status_code == 200
        rows = digits_frame[:3].to_numpy().tolist()
        response = await client.post("/predict", json={"inputs": rows})
        assert response.json()["model"] == {"name": "digits", "version": "1"}
        assert response.headers["x-model-version"] == "1"


async def test_build_serving_app_load_failure_reported(digits_store: Settings) -> None:
    failures: list[BaseException] = []
    app = build_serving_app(digits_store, "models:/digits@missing", on_load_failure=failures.append)
    async with started(app) as client:
        response = await wait_ready(client, timeout_s=10)
        assert response.status_code == 503
    assert isinstance(failures[0], ModelNotFound)


@pytest.mark.slow
async def test_workers_share_socket_replace_dead_one_and_exit_0_on_sigterm(
    digits_store: Settings, digits_frame: pd.DataFrame, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with serving(digits_store, "models:/digits/1") as (process, port):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        # the first answer waits for the supervisor to load the model and fork: a slow start
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert (await wait_ready(client, timeout_s=120)).status_code == 200
            deadline = time.monotonic() + 30  # ready once one worker answers; both soon after
            while len(workers := children.read_text().split()) < 2 and (
                    time.monotonic() < deadline):
                await asyncio.sleep(0.05)
            assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)  # its callers get a 503, never a hang
        rows = digits_frame[:2].to_numpy().tolist()
        statuses = set()
        fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=fresh,
                                     timeout=10) as client:
            for _ in range(20):  # the live worker (or the replacement) answers
                response = await client.post("/predict", json={"inputs": rows})
                statuses.add(response.status_code)
            assert 200 in statuses and statuses <= {200, 503}
            await asyncio.sleep(1.5)  # every worker has published its counts
            scraped = (await client.get("/metrics")).text
            answered = [line for line in scraped.splitlines()
                        if line.startswith("greenbutton_requests_total{")
                        and 'endpoint="/predict"' in line and 'status="200"' in line]
            assert sum(float(line.rsplit(" ", 1)[1]) for line in answered) >= 19, scraped[:3000]
            deadline = time.monotonic() + 30
            while len(children.read_text().split()) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(children.read_text().split()) == 2
            # the killed worker's published counts stay, its gauges (readiness...) went
            [killed] = (tmp_path / "tmp").glob(f"greenbutton-model-*/metrics/{workers[0]}.prom")
            assert "# TYPE greenbutton_requests_total counter" in killed.read_text()
            assert " gauge\n" not in killed.read_text()
    # the killed worker left no folder behind; the others removed theirs on the way out
    assert list((tmp_path / "tmp").iterdir()) == []


def sockets_by_worker(pids: list[int], port: int, state: str | None = "01") -> dict[int, int]:
    """Per process, its TCP sockets on local ``port`` in ``state`` (01: ESTABLISHED, None: any
    but LISTEN), read from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A" and state in (None, fields[3]):
                inodes.add(f"socket:[{fields[9]}]")
    counts = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                held += os.readlink(fd) in inodes
        counts[pid] = held
    return counts


async def http_exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> int:
    """Send one HTTP/1.1 request on a kept-alive connection; the answer's status."""
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await asyncio.wait_for(reader.readexactly(length), timeout=10)
    return int(head.split()[1])


READY_LINE = "digits version 1 loaded and warmed up: ready"


@pytest.mark.slow
async def test_cli_serve_log_says_where_and_when_ready_without_progress_bars(
    digits_store: Settings, tmp_path: Path
) -> None:
    # the prefetch downloads a registered version's files; MLflow would draw a bar for them
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr, serving(digits_store, "models:/digits/1", workers=2,
                                           stderr=stderr, through_cli=True) as (_, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await wait_ready(client)).status_code == 200
            # ready answers once one worker is; the other may still be loading its model
            deadline = time.monotonic() + 60
            while (log.read_text().count(READY_LINE) < 2
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.05)
    text = log.read_text()
    assert "Downloading artifacts" not in text, text[-2000:]
    # one format for every line: time, level, process, logger (uvicorn's lines too)
    line = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[\d+\] [\w.]+: .+")
    lines = text.splitlines()
    assert lines and all(line.fullmatch(entry) for entry in lines), text[-2000:]
    assert f"serving models:/digits/1 on http://127.0.0.1:{port} with 2 workers" in text
    assert text.count(READY_LINE) == 2  # each worker
    assert "uvicorn.error: Started server process" in text


async def test_workers_balance_connections_opened_at_once(
    digits_store: Settings, digits_frame: pd.DataFrame
) -> None:
    with serving(digits_store, "models:/digits/1") as (process, port):
        body = json.dumps({"inputs": digits_frame[:2].to_numpy().tolist()}).encode()
        predict = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                   b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def hold(count: int) -> list[int]:  # `count` more connections, each answered
            opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                            for _ in range(count)))
            streams.extend(opened)
            # each request is written at once: it is in the kernel when a worker hands it on
            return list(await asyncio.gather(*(http_exchange(r, w, predict) for r, w in opened)))

        async def close_all() -> None:
            for _, writer in streams:
                writer.close()
            streams.clear()
            deadline = time.monotonic() + 10  # the workers closed theirs: their counts are 0
            while (sum(sockets_by_worker(workers, port, None).values())
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.05)

        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                assert (await wait_ready(client, timeout_s=120)).status_code == 200
            workers = [int(pid) for pid in
                       Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
            assert len(workers) == 2
            deadline = time.monotonic() + 60
            while True:  # until the other worker serves too (then both take handed-on connections)
                await close_all()
                assert await hold(3) == [200] * 3
                if min(sockets_by_worker(workers, port).values()) > 0:
                    break
                assert time.monotonic() < deadline, sockets_by_worker(workers, port)
                await asyncio.sleep(0.2)
            await close_all()
            assert sum(sockets_by_worker(workers, port, None).values()) == 0
            for _ in range(3):  # 8 at once, as wrk -c8 opens them
                assert await hold(8) == [200] * 8
                split = sorted(sockets_by_worker(workers, port).values())
                assert sum(split) == 8 and split[1] - split[0] <= 2, split  # 4/4 or 5/3
                statuses = await asyncio.gather(*(http_exchange(r, w, predict) for r, w in streams))
                assert statuses == [200] * 8  # kept alive, handed on or not
                await close_all()
        finally:
            for _, writer in streams:
                writer.close()


class SlowModel(mlflow.pyfunc.PythonModel):
    """Takes a second per call, long enough to be in flight when SIGTERM arrives."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        time.sleep(1.0)
        return np.zeros(len(model_input), dtype=np.int64)


@pytest.mark.slow
async def test_sigterm_lets_in_flight_request_finish_and_exits_0(
    settings: Settings, tmp_path: Path, digits_frame: pd.DataFrame
) -> None:
    path = tmp_path / "slow"
    module = sys.modules[SlowModel.__module__]
    cloudpickle.register_pickle_by_value(module)
    try:
        mlflow.pyfunc.save_model(path, python_model=SlowModel(),
                                 signature=infer_signature(digits_frame[:2]),
                                 input_example=digits_frame[:1])
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    with serving(settings, str(path), workers=1) as (process, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert (await wait_ready(client, timeout_s=120)).status_code == 200
            rows = digits_frame[:1].to_numpy().tolist()
            in_flight = asyncio.create_task(client.post("/predict", json={"inputs": rows}))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            assert (await in_flight).status_code == 200
        assert process.wait(timeout=60) == 0
