"""How the control plane calls MLflow: never on its event loop (the handlers call the registry
and the stores in worker threads, so the health check, and the gateway proxying endpoint
traffic on the same loop, answer while a registry call is still running), and a promotion
reads the version from MLflow once."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from control_plane import in_process_control_plane, log_echo_versions
from greenbutton.config import Settings
from greenbutton.wiring import build_registry, build_store

API = "/api/v1"
MLFLOW_DELAY_S = 1.0
"""What every slowed MLflow call takes; the health check must answer well within it."""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    log_echo_versions(settings, [{}])
    yield settings
    mlflow.set_tracking_uri(previous)


def _slowed(call: Callable[..., Any]) -> Callable[..., Any]:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(MLFLOW_DELAY_S)  # an MLflow server far away, or busy
        return call(*args, **kwargs)

    return slow


async def _health_latency_while(client: httpx.AsyncClient, method: str, path: str,
                                **kwargs: Any) -> tuple[float, httpx.Response]:
    """Seconds until the health check answered, counted from the start of ``method path``,
    which waits on MLflow meanwhile (a blocked event loop answers only after that wait)."""
    started = time.monotonic()
    slow = asyncio.create_task(client.request(method, path, **kwargs))
    await asyncio.sleep(0.1)  # the slow request is inside its MLflow call
    health = await client.get(f"{API}/health")
    latency = time.monotonic() - started
    assert health.status_code == 200
    return latency, await slow


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", f"{API}/models", None),
    ("GET", f"{API}/models/echo/versions", None),
    ("GET", f"{API}/models/echo/versions/1", None),
    ("POST", f"{API}/models/echo/versions/1/transitions", {"stage": "Staging", "actor": "a"}),
])
async def test_health_answers_while_a_handler_waits_on_mlflow(
        home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        method: str, path: str, body: dict[str, str] | None) -> None:
    settings = home.model_copy(update={"store": home.store.model_copy(
        update={"uri": f"sqlite:///{tmp_path / 'gb.db'}"})})
    store = build_store(settings)
    registry = build_registry(settings, store)
    for name in ("search_registered_models", "search_model_versions", "get_model_version",
                 "get_registered_model"):
        monkeypatch.setattr(registry.client, name, _slowed(getattr(registry.client, name)))
    try:
        async with in_process_control_plane(settings, store, registry) as found:
            latency, answer = await _health_latency_while(found.client, method, path,
                                                          json=body)
    finally:
        store.close()
    assert answer.status_code in (200, 201), answer.text
    assert latency < MLFLOW_DELAY_S / 2, f"health waited {latency:.2f} s on MLflow"


async def test_a_promotion_reads_the_version_from_mlflow_once(
        home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = home.model_copy(update={"store": home.store.model_copy(
        update={"uri": f"sqlite:///{tmp_path / 'gb.db'}"})})
    store = build_store(settings)
    registry = build_registry(settings, store)
    calls: collections.Counter[str] = collections.Counter()

    def counted(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def count(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return call(*args, **kwargs)

        return count

    monkeypatch.setattr(registry.client, "get_model_version",
                        counted("get_model_version", registry.client.get_model_version))
    try:
        async with in_process_control_plane(settings, store, registry) as found:
            done = await found.client.post(f"{API}/models/echo/versions/1/transitions",
                                           json={"stage": "Production", "actor": "a"})
            assert done.status_code == 201, done.text
            assert calls["get_model_version"] == 1  # resolve, propose and transition share it
            shown = (await found.client.get(f"{API}/models/echo/versions/1")).json()
    finally:
        store.close()
    # the mirror wrote the version's stage tag: the next read asks MLflow again
    assert calls["get_model_version"] == 2
    assert shown["tags"]["greenbutton.stage"] == "Production"
