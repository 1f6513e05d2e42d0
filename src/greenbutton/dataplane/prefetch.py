"""Fetch the served model's files in a forked helper while the serving process imports.

Resolving a ``models:/`` URI needs MLflow's tracking store (for a ``sqlite:`` registry, that
means importing its SQLAlchemy models), and checking the model's requirements lists every
installed package; meanwhile the serving process imports the web stack and the monitors.
Each takes a good part of a second on one core, so ``greenbutton serve`` forks this helper
once MLflow is imported and both run at once. The helper writes where the files are to a
pipe as soon as they are there, then checks the requirements (it logs what does not match)
while the serving process loads the model, and exits; if it fails before answering, the
serving process fetches again itself, which raises the real error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NoReturn

from ..config import MlflowSettings
from .loading import (
    FetchedModel,
    ServedModel,
    check_environment,
    copied_model,
    fetch_model,
    load_fetched,
)

logger = logging.getLogger(__name__)


class ModelFetch:
    """The files of ``model_uri``, downloaded into ``workdir`` by a helper process if one runs.

    Usage::

        with prefetching("models:/digits/3", settings.mlflow) as fetch:
            ...                     # import the serving stack meanwhile
            served = fetch.load()   # waits for the helper, then unpickles here
    """

    def __init__(self, model_uri: str, settings: MlflowSettings, workdir: Path, *,
                 copied_to: Path | None = None) -> None:
        """``copied_to``: the model's files are already there (the controller copied them),
        so nothing is fetched and MLflow is not asked."""
        self.model_uri = model_uri
        self.settings = settings
        self.workdir = workdir
        self.copied_to = copied_to
        self._helper: tuple[int, int] | None = None
        """(pid, read end of its pipe) until answered or stopped."""
        self._checking: int | None = None
        """The pid of a helper that answered and may still be checking the requirements."""
        self._lock = threading.Lock()

    def start(self) -> None:
        """Fork the helper; not once threads run (the child would get only this one, and
        any lock another holds would stay locked in it): then :meth:`fetched` does the work."""
        if self.copied_to is not None or not hasattr(os, "fork") or threading.active_count() > 1:
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            self._answer(write)
        os.close(write)
        self._helper = (pid, read)

    def fetched(self) -> FetchedModel:
        """Where the files are: the helper's answer, else fetched here (raising what fails)."""
        if self.copied_to is not None:
            return copied_model(self.model_uri, self.copied_to)
        answer = self._wait()
        if answer is not None:
            return FetchedModel(**answer)
        return fetch_model(self.model_uri, self.settings, self.workdir)

    def load(self) -> ServedModel:
        """The loaded model (blocking: waits for the helper's answer, then unpickles here)."""
        served = load_fetched(self.model_uri, self.fetched())
        self._reap_checker()  # done checking by now, as a rule
        return served

    def stop(self) -> None:
        """End a helper nobody waited for (the server stopped first); reap one that answered
        and has finished its check (one still checking ends by itself)."""
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            pid, read = helper
            _kill_and_reap(pid)
            os.close(read)
        self._reap_checker()

    def _wait(self) -> dict[str, Any] | None:
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is None:
            return None
        pid, read = helper
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()  # until the helper has answered (or died)
        try:
            answer: dict[str, Any] = json.loads(data)
        except ValueError:  # no answer, or half of one: it failed
            _kill_and_reap(pid)
            return None
        self._checking = pid
        return answer

    def _reap_checker(self) -> None:
        # never killed: once answered, its pid may be reaped by another waiter and reused
        pid = self._checking
        if pid is None:
            return
        with contextlib.suppress(ChildProcessError):  # (reaped by another waiter)
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                return  # still checking
        self._checking = None

    def _answer(self, write: int) -> NoReturn:
        # the helper: fetch, answer, check the requirements, and exit without the parent's
        # exit handlers. The answer says "checked": the loader leaves the check to us.
        code = 1
        try:
            fetched = fetch_model(self.model_uri, self.settings, self.workdir)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(asdict(replace(fetched, is_checked=True))).encode())
            code = 0
            check_environment(fetched)
        except BaseException as error:  # before the answer: the serving process fetches
            # again and reports the error; after it, only the check is lost, and it is moot
            # when the files are gone (the server stopped and removed them)
            if code == 0 and Path(fetched.path).exists():
                logger.warning("checking the model's requirements failed: %s", error)
        finally:
            os._exit(code)


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # (reaped by another waiter)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def prefetching(model_uri: str, settings: MlflowSettings, *,
                copied_to: Path | None = None) -> Iterator[ModelFetch]:
    """A started :class:`ModelFetch` into a temporary folder, removed (helper ended) at exit."""
    with tempfile.TemporaryDirectory(prefix="greenbutton-model-",
                                     ignore_cleanup_errors=True) as workdir:
        fetch = ModelFetch(model_uri, settings, Path(workdir), copied_to=copied_to)
        fetch.start()
        try:
            yield fetch
        finally:
            fetch.stop()
