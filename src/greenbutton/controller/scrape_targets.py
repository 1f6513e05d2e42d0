"""Prometheus ``file_sd`` targets: every serving process the controller runs, rewritten as
processes come and go (Prometheus rereads the file by itself; no reload).

Each process is a target of its own, labelled ``model``, ``version`` and ``route`` (the
deployment: its stable URL is ``/endpoints/<route>/``). Scraping the stable URL instead
would reach one weighted-random version per scrape, and a port of the local target changes
at every rollout. Usage::

    targets = ScrapeTargetFile(settings.scrape_targets_file)
    targets.write(observed)     # the controller, after each observation

The file (``file_sd_configs`` format, JSON)::

    [{"targets": ["127.0.0.1:41517"],
      "labels": {"model": "wine", "version": "3", "route": "wine", "replica": "0"}}]
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .reconcile import InstanceState, ObservedDeployment

SCRAPED_STATES = frozenset({InstanceState.STARTING, InstanceState.READY,
                            InstanceState.STOPPING})
"""A process is scraped from its start until it is gone (a draining one still counts)."""


def target_groups(observed: Sequence[ObservedDeployment]) -> list[dict[str, Any]]:
    """One ``file_sd`` group per serving process with an HTTP address, in a stable order."""
    groups = []
    for instance in observed:
        address = _address(instance.url)
        if address is None or instance.state not in SCRAPED_STATES:
            continue
        ref = instance.ref
        groups.append({"targets": [address], "labels": {
            "model": ref.model, "version": str(ref.version), "route": ref.name,
            "replica": str(ref.replica)}})
    return sorted(groups, key=lambda g: (g["labels"]["route"], int(g["labels"]["version"]),
                                         int(g["labels"]["replica"]), g["targets"][0]))


def _address(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


class ScrapeTargetFile:
    """Writes :func:`target_groups` to ``path`` (atomically, only when they changed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: str | None = None

    def write(self, observed: Sequence[ObservedDeployment]) -> bool:
        """Rewrite the file if the targets changed; whether it was written."""
        text = json.dumps(target_groups(observed), indent=1) + "\n"
        if text == self._written and self.path.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.chmod(temp, 0o644)  # Prometheus may run as another user
            os.replace(temp, self.path)  # Prometheus never reads half a file
        except BaseException:
            os.unlink(temp)
            raise
        self._written = text
        return True
