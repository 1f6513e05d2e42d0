"""ModelFetch: a forked helper resolves and downloads the model while the server imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenbutton.config import Settings
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.prefetch import ModelFetch

FETCH = """
import json, sys
from greenbutton.config import Settings
from greenbutton.errors import GreenbuttonError
from greenbutton.dataplane.prefetch import prefetching
with prefetching(sys.argv[1], Settings().mlflow) as fetch:
    try:
        fetched = fetch.fetched()
    except GreenbuttonError as error:
        print(json.dumps({"error": type(error).__name__, "message": error.message}))
        raise SystemExit(0)
    served = fetch.load()
print(json.dumps({"is_checked": fetched.is_checked, "name": served.name,
                  "version": served.version, "workdir": str(fetch.workdir),
                  "in_workdir": fetched.path.startswith(str(fetch.workdir))}))
"""


def fetch_in_fresh_process(settings: Settings, uri: str) -> dict[str, object]:
    # a fresh process has one thread, so ModelFetch.start really forks its helper
    env = {**os.environ, **settings.environ()}
    done = subprocess.run([sys.executable, "-c", FETCH, uri], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_helper_fetches_and_checks_the_model_the_server_loads(digits_store: Settings) -> None:
    answer = fetch_in_fresh_process(digits_store, "models:/digits/1")
    assert answer["is_checked"] is True  # only the helper checks the environment
    assert (answer["name"], answer["version"]) == ("digits", "1")
    assert answer["in_workdir"] is True
    assert not Path(str(answer["workdir"])).exists()  # removed when the fetch ends


def test_helper_failure_raises_the_real_error_here(digits_store: Settings) -> None:
    answer = fetch_in_fresh_process(digits_store, "models:/digits@missing")
    assert answer["error"] == "ModelNotFound"
    assert "missing" in str(answer["message"])


def test_without_helper_fetches_in_process(
    digits_store: Settings, tmp_path: Path, served_digits: ServedModel
) -> None:
    fetch = ModelFetch("models:/digits/1", digits_store.mlflow, tmp_path)  # never started
    fetched = fetch.fetched()
    assert (fetched.name, fetched.version, fetched.is_checked) == ("digits", "1", False)
    assert fetched.path.startswith(str(tmp_path))
    fetch.stop()  # nothing to end


@pytest.mark.parametrize("started", [False, True])
def test_stop_ends_a_helper_nobody_waited_for(
    digits_store: Settings, tmp_path: Path, started: bool
) -> None:
    fetch = ModelFetch("models:/digits/1", digits_store.mlflow, tmp_path)
    if started:
        fetch.start()  # forks only if this test process runs one thread
    fetch.stop()
    fetch.stop()


SLOW_CHECK = """
import json, os, sys, time
from pathlib import Path
from greenbutton.config import Settings
from greenbutton.dataplane import prefetch
marker = Path(sys.argv[2])
def slow_check(fetched):  # the helper's requirements check, made slow
    time.sleep(2)
    marker.touch()
    return fetched
prefetch.check_environment = slow_check
with prefetch.prefetching(sys.argv[1], Settings().mlflow) as fetch:
    served = fetch.load()
    checked_at_answer = marker.exists()
    pid = fetch._checking
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the helper exits right after its check
print(json.dumps({"version": served.version, "checked_at_answer": checked_at_answer,
                  "checked_later": marker.exists(),
                  "is_zombie_left": pid is not None and os.path.exists(f"/proc/{pid}")}))
"""


def test_helper_answers_before_its_requirements_check_ends(
    digits_store: Settings, tmp_path: Path
) -> None:
    # the serving process loads the model while the helper still lists the installed packages
    env = {**os.environ, **digits_store.environ()}
    done = subprocess.run([sys.executable, "-c", SLOW_CHECK, "models:/digits/1",
                           str(tmp_path / "checked")], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["version"] == "1"
    assert answer["checked_at_answer"] is False and answer["checked_later"] is True
    assert answer["is_zombie_left"] is False  # reaped when the fetch ended


STOPPED_EARLY = """
import sys, time
from greenbutton.config import Settings
from greenbutton.dataplane import prefetch
check = prefetch.check_environment
def late_check(fetched):  # the server is gone, and its folder with it, before the check reads
    time.sleep(1)
    return check(fetched)
prefetch.check_environment = late_check
with prefetch.prefetching(sys.argv[1], Settings().mlflow) as fetch:
    fetch.load()
"""


def test_a_server_stopped_during_the_check_leaves_no_warning(digits_store: Settings) -> None:
    # stopping a server just after it became ready is normal; the check it cut short is moot
    env = {**os.environ, **digits_store.environ()}
    done = subprocess.run([sys.executable, "-c", STOPPED_EARLY, "models:/digits/1"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert "requirements" not in done.stderr
