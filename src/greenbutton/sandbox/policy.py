"""What model code may see and do when greenbutton runs it outside a serving process."""

from __future__ import annotations

import pwd
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings

NOBODY = 65534
SYSTEM_FOLDERS = frozenset(
    Path(p) for p in ("/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc",
                      "/proc", "/sys", "/dev", "/var"))
"""Never covered: the programs and libraries Python needs live there."""
PRIVATE_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home", "/mnt",
                   "/media", "/srv")
"""Covered on every machine: other users' and processes' files, sockets and temp files."""


@dataclass(frozen=True)
class SandboxPolicy:
    """Folders covered (``hidden``) and bound back read-only (``kept``), the user to run as
    when greenbutton is root, and limits. See :mod:`greenbutton.sandbox.enter`."""

    hidden: tuple[str, ...]
    kept: tuple[str, ...]
    uid: int = NOBODY
    gid: int = NOBODY
    is_network_allowed: bool = False
    is_unconfined_allowed: bool = False
    max_output_bytes: int = 32 * 1024 * 1024
    max_file_bytes: int = 1024 * 1024 * 1024


def policy_for(settings: Settings, *, is_network_allowed: bool = False) -> SandboxPolicy:
    """The policy for model code run on behalf of the platform configured by ``settings``."""
    section = settings.sandbox
    uid, gid = _user(section.user)
    return SandboxPolicy(
        hidden=tuple(str(p) for p in _hidden(settings)),
        kept=tuple(str(p) for p in _kept()),
        uid=uid, gid=gid,
        is_network_allowed=is_network_allowed,
        is_unconfined_allowed=section.is_unconfined_allowed,
        max_output_bytes=section.max_output_bytes,
        max_file_bytes=section.max_file_bytes,
    )


def _hidden(settings: Settings) -> list[Path]:
    """The platform's folders and every place its secrets or other people's files live."""
    candidates = [settings.home, Path.home(), Path.cwd(), Path(tempfile.gettempdir()),
                  *(Path(p) for p in PRIVATE_FOLDERS),
                  *(Path(p.strip()) for p in settings.sandbox.hidden_paths.split(",")
                    if p.strip())]
    for uri in (settings.store.uri, settings.mlflow.tracking_uri, settings.mlflow.registry_uri,
                settings.monitoring.payload_store_uri):
        if uri.startswith("sqlite:///"):
            candidates.append(Path(uri.removeprefix("sqlite:///")).parent)
    if settings.mlflow.artifact_root.startswith("file://"):
        candidates.append(Path(settings.mlflow.artifact_root.removeprefix("file://")))
    return _folders(candidates)


def _kept() -> list[Path]:
    """What the interpreter and its packages need, read-only."""
    return _folders([Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                       sys.base_exec_prefix, *sys.path) if p])


def _folders(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if not path.is_absolute():
            continue
        resolved = path.resolve()
        if resolved.is_dir() and resolved not in SYSTEM_FOLDERS and resolved not in found:
            found.append(resolved)
    return found


def _user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return NOBODY, NOBODY
    return entry.pw_uid, entry.pw_gid
