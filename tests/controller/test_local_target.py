"""LocalTarget with real child processes on 127.0.0.1 (fake_server.py, not a real model)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from greenbutton.config import Settings
from greenbutton.controller.reconcile import InstanceState, ObservedDeployment, VersionRef
from greenbutton.controller.targets import open_target
from greenbutton.controller.targets.local import LocalTarget
from greenbutton.errors import UnsupportedBackend

V1 = VersionRef("digits", "digits", 1)
FAKE_SERVER = Path(__file__).with_name("fake_server.py")
Wait = Callable[[Callable[[], Awaitable[bool]], float], Awaitable[None]]


@pytest.fixture
async def target(fast_settings: Settings, fake_argv: Any) -> AsyncIterator[LocalTarget]:
    target = LocalTarget(fast_settings, argv=fake_argv())
    yield target
    await target.close()


async def only(target: LocalTarget) -> ObservedDeployment:
    [instance] = await target.observe()
    return instance


async def until_state(target: LocalTarget, state: InstanceState, wait_for: Wait) -> None:
    async def has_state() -> bool:
        return (await only(target)).state is state

    await wait_for(has_state, 15.0)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_start_child_becomes_ready_and_serves(target: LocalTarget, wait_for: Wait) -> None:
    await target.start(V1)
    assert (await only(target)).state is InstanceState.STARTING
    await until_state(target, InstanceState.READY, wait_for)
    url = (await only(target)).url
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(f"{url}/predict", content=b"{}")
    assert response.json()["version"] == 1


async def test_a_child_still_importing_does_not_hold_a_reconcile_pass(
        fast_settings: Settings) -> None:
    """A serving process holds its socket before it answers anything (it imports its model):
    the kernel queues the readiness probe. Waiting on that probe held the whole pass, and the
    promotion behind it, until the child answered or the probe timed out."""

    def argv(ref: VersionRef, fd: int) -> list[str]:
        return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version", "1",
                "--silent-s", "10"]

    target = LocalTarget(fast_settings, argv=argv)
    try:
        await target.start(V1)
        started = time.monotonic()
        observed = await only(target)
        elapsed_s = time.monotonic() - started
        assert observed.state is InstanceState.STARTING
        assert elapsed_s < 1.0, f"observe waited {elapsed_s:.2f} s on a silent child"
    finally:
        await target.close()


async def test_a_stop_cancelled_before_its_sigkill_leaves_no_child_running(
        fast_settings: Settings, wait_for: Wait) -> None:
    """``greenbutton up`` stopping cancels the drains in progress; the child of one, which
    had not yet exited on SIGTERM, was forgotten alive (a serving process nobody stops)."""

    def argv(ref: VersionRef, fd: int) -> list[str]:
        return [sys.executable, str(FAKE_SERVER), "--fd", str(fd), "--version", "1",
                "--silent-s", "60", "--ignore-sigterm"]

    target = LocalTarget(fast_settings, argv=argv)
    try:
        await target.start(V1)
        pid = int((await only(target)).handle or 0)
        await asyncio.sleep(0.5)  # the child is up and ignores SIGTERM
        stopping = asyncio.create_task(target.stop(V1, 30.0))
        await asyncio.sleep(0.5)
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping

        async def is_gone() -> bool:
            return not is_alive(pid)

        await wait_for(is_gone, 5.0)
    finally:
        await target.close()


async def test_start_twice_keeps_one_child(target: LocalTarget) -> None:
    await target.start(V1)
    first = (await only(target)).handle
    await target.start(V1)
    assert (await only(target)).handle == first


async def test_start_records_instance_in_private_state_file(
    target: LocalTarget, fast_settings: Settings
) -> None:
    await target.start(V1)
    state_file = fast_settings.home / "run" / "local-target.json"
    [record] = json.loads(state_file.read_text())["instances"]
    assert (record["name"], record["version"], str(record["pid"])) == (
        "digits", 1, (await only(target)).handle
    )
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


async def test_start_unsafe_name_is_refused_before_spawn(
    target: LocalTarget, fast_settings: Settings
) -> None:
    with pytest.raises(ValueError):
        await target.start(VersionRef("../x", "digits", 1))
    with pytest.raises(ValueError):
        await target.start(VersionRef("digits", "digits; rm -rf /", 1))
    assert await target.observe() == []


async def test_crashed_child_is_failed_with_exit_code_and_log_tail(
    target: LocalTarget, wait_for: Wait
) -> None:
    await target.start(V1)
    await until_state(target, InstanceState.READY, wait_for)
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{(await only(target)).url}/crash")
    await until_state(target, InstanceState.FAILED, wait_for)
    failed = await only(target)
    assert failed.failures == 1
    assert failed.reason is not None
    assert "code 3" in failed.reason and "crashing on purpose" in failed.reason


async def test_start_failed_instance_replaces_it_keeping_failure_count(
    target: LocalTarget, wait_for: Wait
) -> None:
    await target.start(V1)
    await until_state(target, InstanceState.READY, wait_for)
    old = await only(target)
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{old.url}/crash")
    await until_state(target, InstanceState.FAILED, wait_for)
    await target.start(V1)
    await until_state(target, InstanceState.READY, wait_for)
    new = await only(target)
    assert (new.failures, new.handle != old.handle) == (1, True)


async def test_stop_terminates_child_and_forgets_it(
    target: LocalTarget, wait_for: Wait, fast_settings: Settings
) -> None:
    await target.start(V1)
    await until_state(target, InstanceState.READY, wait_for)
    pid = int((await only(target)).handle or 0)
    await target.stop(V1, drain_timeout_s=5.0)
    assert await target.observe() == []
    assert not is_alive(pid)
    state_file = fast_settings.home / "run" / "local-target.json"
    assert json.loads(state_file.read_text())["instances"] == []


async def test_stop_kills_child_that_ignores_sigterm(fast_settings: Settings) -> None:
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('up', flush=True); time.sleep(30)")
    target = LocalTarget(fast_settings, argv=lambda ref, fd: [sys.executable, "-c", stubborn])
    try:
        await target.start(V1)
        pid = int((await only(target)).handle or 0)
        await target.stop(V1, drain_timeout_s=0.3)
        assert not is_alive(pid)
    finally:
        await target.close()


async def test_child_not_ready_in_time_is_failed(
    fast_settings: Settings, fake_argv: Any, wait_for: Wait
) -> None:
    controller = fast_settings.controller.model_copy(update={"ready_timeout_s": 0.5})
    settings = fast_settings.model_copy(update={"controller": controller})
    target = LocalTarget(settings, argv=fake_argv(ready_delay_s=60))
    try:
        await target.start(V1)
        await until_state(target, InstanceState.FAILED, wait_for)
        assert "not ready" in ((await only(target)).reason or "")
    finally:
        await target.close()


async def test_ready_child_silent_on_liveness_is_killed_and_failed(
    fast_settings: Settings, fake_argv: Any, wait_for: Wait
) -> None:
    controller = fast_settings.controller.model_copy(update={"liveness_timeout_s": 1.0})
    settings = fast_settings.model_copy(update={"controller": controller})
    target = LocalTarget(settings, argv=fake_argv())
    try:
        await target.start(V1)
        await until_state(target, InstanceState.READY, wait_for)
        ready = await only(target)
        pid = int(ready.handle or 0)
        for _ in range(3):  # answering: stays ready past the timeout
            await asyncio.sleep(0.5)
            assert (await only(target)).state is InstanceState.READY
        async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
            with contextlib.suppress(httpx.TimeoutException):
                await client.post(f"{ready.url}/freeze")
        await until_state(target, InstanceState.FAILED, wait_for)
        failed = await only(target)
        assert "not answering /health/live" in (failed.reason or "")
        assert "freezing on purpose" in (failed.reason or "")  # the log's tail, for the why
        assert not is_alive(pid)
    finally:
        await target.close()


async def test_close_stops_every_child(fast_settings: Settings, fake_argv: Any) -> None:
    target = LocalTarget(fast_settings, argv=fake_argv())
    await target.start(V1)
    await target.start(VersionRef("iris", "iris", 2))
    pids = [int(i.handle or 0) for i in await target.observe()]
    await target.close()
    assert not any(is_alive(pid) for pid in pids)


def test_open_target_unknown_scheme_raises_unsupported_backend(settings: Settings) -> None:
    with pytest.raises(UnsupportedBackend):
        open_target("nomad://cluster", settings)


async def test_open_target_local_returns_local_target(settings: Settings) -> None:
    target = open_target("local://", settings)
    try:
        assert isinstance(target, LocalTarget)
    finally:
        await target.close()


async def test_serving_process_gets_none_of_the_platform_secrets(
        fast_settings: Settings, tmp_path: Any, wait_for: Wait,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENBUTTON_TOKEN", "gb_admin-secret")
    seen = tmp_path / "env.json"
    dump = (f"import json, os; json.dump({{'env': dict(os.environ), 'cwd': os.getcwd()}}, "
            f"open({str(seen)!r}, 'w'))")
    target = LocalTarget(fast_settings, argv=lambda ref, fd: [sys.executable, "-c", dump])
    try:
        await target.start(V1)
        await wait_for(lambda: asyncio.sleep(0, result=seen.exists()), 15.0)
    finally:
        await target.close()
    child = json.loads(seen.read_text())
    names = set(child["env"])
    assert not {"GREENBUTTON_TOKEN", "GREENBUTTON_STORE__URI",
                "GREENBUTTON_AUTH__AUDIT_KEY_FILE"} & names
    assert "gb_admin-secret" not in json.dumps(child["env"])
    assert "GREENBUTTON_SERVING__WORKERS" in names and "GREENBUTTON_SERVER__URL" in names
    assert child["cwd"] == str(fast_settings.home / "run")
