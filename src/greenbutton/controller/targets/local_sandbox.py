"""Local serving processes in the sandbox, each on a copy of its version made by the controller.

A serving process runs the model's code, so it gets none of the platform: the controller
copies the version's files out of MLflow (nothing is unpickled here) into
``<home>/models/<model>/<version>``, and the process sees that copy read-only, the payload
store's folder read-write, what Python needs, its own ``/tmp``, and the network (it serves,
and asks the control plane about tokens); not the home, the stores, MLflow or the keys.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...config import Settings
from ...errors import InvalidInput
from ...sandbox.policy import policy_for
from ...sandbox.runner import Sandbox
from ..reconcile import VersionRef

log = logging.getLogger(__name__)
_COMPLETE = ".complete"


class ModelCopies:
    """One copy of each served version's files, shared by its replicas.

    Usage::

        copies = ModelCopies(settings, owner=(65534, 65534))
        folder = copies.ensure("digits", 3)     # blocking: downloads once
        copies.release("digits", 3)             # when nothing serves it any more
    """

    def __init__(self, settings: Settings, *, owner: tuple[int, int] | None) -> None:
        self._settings = settings
        self._root = settings.home / "models"
        self._owner = owner

    def folder(self, model: str, version: int) -> Path:
        """Where the copy of ``model`` version ``version`` is (or goes)."""
        return self._root / model / str(version)

    def ensure(self, model: str, version: int) -> Path:
        """The copy's model folder, downloading it first if there is none (write, then
        rename: a crash leaves no half copy)."""
        from ...dataplane.loading import fetch_model

        folder = self.folder(model, version)
        if (folder / _COMPLETE).is_file():
            return folder / "model"
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=folder.parent))
        try:
            fetched = fetch_model(f"models:/{model}/{version}", self._settings.mlflow, partial)
            os.rename(fetched.path, partial / "model")
            (partial / _COMPLETE).touch()
            self._give_away(partial)
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return folder / "model"

    def release(self, model: str, version: int) -> None:
        """Remove the copy (nothing serves the version any more)."""
        shutil.rmtree(self.folder(model, version), ignore_errors=True)

    def _give_away(self, folder: Path) -> None:
        """Readable by the sandbox's user (who is not us when we are root)."""
        if self._owner is None:
            return
        for parent, folders, files in os.walk(folder):
            for name in (parent, *(os.path.join(parent, n) for n in (*folders, *files))):
                os.lchown(name, *self._owner)


class SandboxedServing:
    """How the local target starts a serving process when ``sandbox.is_serving_sandboxed``."""

    def __init__(self, settings: Settings) -> None:
        self._sandbox = Sandbox(policy_for(settings, is_network_allowed=True))
        policy = self._sandbox.policy
        self._owner = (policy.uid, policy.gid) if os.geteuid() == 0 else None
        self.copies = ModelCopies(settings, owner=self._owner)
        uri = settings.monitoring.payload_store_uri
        self._writable = [self._payload_folder(settings)] if uri.startswith("sqlite:///") else []
        alerts = settings.monitoring.alerts_file
        self._kept = [alerts] if alerts is not None else []

    def prepare(self, ref: VersionRef) -> Path:
        """The copy ``ref`` will serve (blocking: run it off the event loop)."""
        return self.copies.ensure(ref.model, ref.version)

    def popen(self, argv: Sequence[str], model: Path, *, env: dict[str, str],
              pass_fds: Sequence[int], output: int) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the sandbox, seeing ``model`` (read-only)."""
        for folder in self._writable:  # the control plane (root) may have created files since
            self._give(folder)
        return self._sandbox.spawn(argv, env=env, pass_fds=pass_fds, output=output,
                                   kept=[model, *self._kept], writable=self._writable)

    def _give(self, folder: Path) -> None:
        """``folder`` and what is in it to the sandbox's user (when we are root)."""
        if self._owner is None:
            return
        os.chown(folder, *self._owner)
        for entry in folder.iterdir():
            os.lchown(entry, *self._owner)

    def _payload_folder(self, settings: Settings) -> Path:
        """The folder of a SQLite payload store, made the sandbox's user's; it must not be
        (or contain) the home: that would show the model everything."""
        uri = settings.monitoring.payload_store_uri
        folder = Path(uri.removeprefix("sqlite:///")).parent.resolve()
        if settings.home == folder or settings.home.is_relative_to(folder):
            raise InvalidInput(f"the payload store {uri} must be in a folder of its own, not "
                               "the home (serving processes write it, and see that folder)",
                               field="monitoring.payload_store_uri")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder
