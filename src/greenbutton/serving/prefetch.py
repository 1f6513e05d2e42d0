"""Fetch the served model's files in a forked helper while the serving process imports.

Resolving a ``models:/`` URI needs MLflow's tracking store (for a ``sqlite:`` registry, that
means importing its SQLAlchemy models), and checking the model's requirements lists every
installed package; meanwhile the serving process imports the web stack and the monitors.
Each takes a good part of a second on one core, so ``greenbutton serve`` forks this helper
once MLflow is imported and both run at once. The helper writes where the files are to a
pipe and exits; if it fails, the serving process fetches again itself, which raises the
real error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from ..config import MlflowSettings
from .loading import FetchedModel, ServedModel, check_environment, fetch_model, load_fetched


class ModelFetch:
    """The files of ``model_uri``, downloaded into ``workdir`` by a helper process if one runs.

    Usage::

        with prefetching("models:/digits/3", settings.mlflow) as fetch:
            ...                     # import the serving stack meanwhile
            served = fetch.load()   # waits for the helper, then unpickles here
    """

    def __init__(self, model_uri: str, settings: MlflowSettings, workdir: Path) -> None:
        self.model_uri = model_uri
        self.settings = settings
        self.workdir = workdir
        self._helper: tuple[int, int] | None = None
        """(pid, read end of its pipe) until answered or stopped."""
        self._lock = threading.Lock()

    def start(self) -> None:
        """Fork the helper; not once threads run (the child would get only this one, and
        any lock another holds would stay locked in it): then :meth:`fetched` does the work."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
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
        answer = self._wait()
        if answer is not None:
            return FetchedModel(**answer)
        return fetch_model(self.model_uri, self.settings, self.workdir)

    def load(self) -> ServedModel:
        """The loaded model (blocking: waits for the helper, then unpickles here)."""
        return load_fetched(self.model_uri, self.fetched())

    def stop(self) -> None:
        """End a helper nobody waited for (the server stopped first)."""
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is None:
            return
        pid, read = helper
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)

    def _wait(self) -> dict[str, Any] | None:
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is None:
            return None
        pid, read = helper
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0 or not data:
            return None
        answer: dict[str, Any] = json.loads(data)
        return answer

    def _answer(self, write: int) -> NoReturn:
        # the helper: fetch, check, answer, and exit without the parent's exit handlers
        code = 1
        try:
            fetched = check_environment(fetch_model(self.model_uri, self.settings, self.workdir))
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(asdict(fetched)).encode())
            code = 0
        except BaseException:  # the serving process fetches again and reports the error
            pass
        finally:
            os._exit(code)


@contextlib.contextmanager
def prefetching(model_uri: str, settings: MlflowSettings) -> Iterator[ModelFetch]:
    """A started :class:`ModelFetch` into a temporary folder, removed (helper ended) at exit."""
    with tempfile.TemporaryDirectory(prefix="greenbutton-model-",
                                     ignore_cleanup_errors=True) as workdir:
        fetch = ModelFetch(model_uri, settings, Path(workdir))
        fetch.start()
        try:
            yield fetch
        finally:
            fetch.stop()
