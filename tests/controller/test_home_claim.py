"""One control plane per embedded home: the claim names its holder and dies with it (held by
a real process: the claim is between processes)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenbutton.controller.home_claim import (
    ControlPlaneRunning,
    RunningControlPlane,
    claim_home,
    running_control_plane,
)

URL = "http://127.0.0.1:8611"
CLAIMER = """\
import sys, time
from pathlib import Path
from greenbutton.controller.home_claim import claim_home
claim = claim_home(Path(sys.argv[1]), sys.argv[2])
print("claimed", flush=True)
time.sleep(300)
"""


@pytest.fixture
def first(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that claimed ``tmp_path`` for a control plane at URL."""
    process = subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path), URL],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "claimed\n"
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_claim_of_a_claimed_home_names_the_first_control_plane(
        tmp_path: Path, first: subprocess.Popen[str]) -> None:
    with pytest.raises(ControlPlaneRunning) as raised:
        claim_home(tmp_path, "http://127.0.0.1:8612")
    assert raised.value.running == RunningControlPlane(first.pid, URL)


def test_running_control_plane_is_the_holder_of_the_claim(
        tmp_path: Path, first: subprocess.Popen[str]) -> None:
    assert running_control_plane(tmp_path) == RunningControlPlane(first.pid, URL)


def test_claim_dies_with_its_holder(tmp_path: Path, first: subprocess.Popen[str]) -> None:
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert running_control_plane(tmp_path) is None
    claim = claim_home(tmp_path, "http://127.0.0.1:8612")
    try:
        assert running_control_plane(tmp_path) is not None
    finally:
        claim.close()
    assert running_control_plane(tmp_path) is None


def test_unclaimed_home_has_no_control_plane(tmp_path: Path) -> None:
    assert running_control_plane(tmp_path) is None
