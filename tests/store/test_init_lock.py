"""The initialisation lock: one process at a time, a bounded wait said once, gone with its
holder (held by real processes here: the lock is between processes)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenbutton.store.init_lock import (
    INIT_LOCK,
    InitialisationTimeout,
    embedded_folder,
    initialising,
)

HOLDER = """\
import sys, time
from pathlib import Path
from greenbutton.store.init_lock import initialising
with initialising(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(folder: Path, seconds: float) -> subprocess.Popen[str]:
    """A process holding ``folder``'s lock for ``seconds`` (returned once it holds it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    return process


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``tmp_path``'s lock until the test ends (or kills it)."""
    process = hold(tmp_path, 300)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_initialising_waits_until_the_holder_is_done(tmp_path: Path) -> None:
    holder = hold(tmp_path, 1.0)
    started = time.monotonic()
    with initialising(tmp_path, timeout_s=30):
        waited_s = time.monotonic() - started
    holder.communicate()
    assert 0.5 < waited_s < 30


def test_initialising_gives_up_after_its_timeout_naming_the_holder(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(InitialisationTimeout) as raised:
        with initialising(tmp_path, timeout_s=0.5):
            pass
    assert 0.5 <= time.monotonic() - started < 5
    assert raised.value.pid == holder.pid
    assert raised.value.lock_file == tmp_path / INIT_LOCK


def test_initialising_says_once_that_it_waits_and_for_whom(
        tmp_path: Path, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "greenbutton.store.init_lock"):
        with pytest.raises(InitialisationTimeout):
            with initialising(tmp_path, timeout_s=0.5):
                pass
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"waiting for another greenbutton process (pid {holder.pid}) to finish "
                    f"initialising {tmp_path}"]


def test_lock_is_released_when_its_holder_is_killed(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(InitialisationTimeout):
        with initialising(tmp_path, timeout_s=0.2):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with initialising(tmp_path, timeout_s=5):
        assert time.monotonic() - started < 1


def test_initialising_again_in_the_same_thread_does_not_wait_for_itself(
        tmp_path: Path) -> None:
    with initialising(tmp_path, timeout_s=0.5), initialising(tmp_path, timeout_s=0.5):
        pass
    with initialising(tmp_path, timeout_s=0.5):  # released by the outer block
        pass


def test_released_lock_leaves_no_pid_behind(tmp_path: Path) -> None:
    with initialising(tmp_path):
        assert (tmp_path / INIT_LOCK).read_text().strip().isdigit()
    assert (tmp_path / INIT_LOCK).read_text() == ""


@pytest.mark.parametrize(("uri", "folder"), [
    ("sqlite:////srv/gb/mlflow.db", Path("/srv/gb")),
    ("sqlite+pysqlite:////srv/gb/monitoring/payloads.db", Path("/srv/gb/monitoring")),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql://u@db:5432/gb", None),
    ("http://mlflow:5000", None),
])
def test_embedded_folder_is_a_sqlite_files_folder(uri: str, folder: Path | None) -> None:
    assert embedded_folder(uri) == folder
