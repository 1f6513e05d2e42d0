"""The leader's route table, shared with follower replicas on the same home (local target).

Only the leader reconciles, so only its gateway learns where each deployment is served. With
several replicas on one machine and one ``GREENBUTTON_HOME`` (what the local target needs),
the leader publishes its table to ``<home>/run/routes.json`` (write-then-rename) and followers
load it, so ``/endpoints/<name>/`` answers on every replica. Usage::

    shared = SharedRoutes(routes, settings.home / "run" / "routes.json")
    shared.tick(is_leader=True)     # leader: publish when the table changed
    shared.tick(is_leader=False)    # follower: take the leader's table

A follower's table lags the leader's by at most one ``leader_poll_interval_s``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..reconcile import Backend
from .table import RouteTable

log = logging.getLogger(__name__)


class SharedRoutes:
    """Publish (leader) or follow (follower) the route table through one file."""

    def __init__(self, routes: RouteTable, path: Path) -> None:
        self._routes = routes
        self._path = path
        self._last: dict[str, Any] | None = None

    def tick(self, *, is_leader: bool) -> None:
        """One step: publish or follow; a failure is logged, never raised."""
        try:
            self.publish() if is_leader else self.follow()
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("sharing routes through %s failed: %s", self._path, error)

    def publish(self) -> None:
        """Write the table if it changed since the last write."""
        table = self._table()
        if table == self._last:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=self._path.parent, prefix=".routes.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(table, file)
            os.replace(temp, self._path)
        except BaseException:
            os.unlink(temp)
            raise
        self._last = table

    def follow(self) -> None:
        """Make the local table equal to the published one."""
        if not self._path.exists():
            self._routes.mark_loaded()  # the leader has published nothing yet
            return
        table = json.loads(self._path.read_text(encoding="utf-8"))
        if table == self._last:
            return
        wanted = table["routes"]
        for name in set(self._routes.snapshot()) - set(wanted):
            self._routes.remove(name)
        for name, backends in wanted.items():
            self._routes.switch(name, [Backend(**b) for b in backends])
            self._routes.set_sticky_header(name, table["sticky"].get(name))
        self._last = table
        self._routes.mark_loaded()

    def _table(self) -> dict[str, Any]:
        routes = self._routes.snapshot()
        return {
            "routes": {name: [dataclasses.asdict(b) for b in backends]
                       for name, backends in sorted(routes.items())},
            "sticky": {name: header for name in sorted(routes)
                       if (header := self._routes.sticky_header(name))},
        }
