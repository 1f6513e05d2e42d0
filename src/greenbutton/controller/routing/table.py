"""Which backend answers each deployment, and how many requests each backend has in flight.

The controller writes (``switch``, ``remove``); the gateway reads at request time (``lease``),
so a switch takes effect for the very next request. Until the table is ``mark_loaded()`` (the
controller's first pass, or a follower's first read of the leader's table) an unknown name is
"not ready yet" (503), not "no such deployment" (404): a restarted control plane does not
deny deployments it has not looked at. Usage::

    routes.switch("digits", (Backend(version=2, url="http://127.0.0.1:41234"),))
    with routes.lease("digits", key=request_id) as backend:   # see routing.choose_variant
        ...  # forward to backend.url
    await routes.wait_drained("http://127.0.0.1:40000", timeout_s=30)
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from types import TracebackType

from ...errors import DeploymentNotFound, NotReady
from ..reconcile import Backend
from .split import choose_variant

_DRAIN_POLL_S = 0.05


class Lease:
    """One request's hold on a backend; ``release()`` is idempotent."""

    def __init__(self, table: RouteTable, name: str, backend: Backend) -> None:
        self.name = name
        self.backend = backend
        self._table = table
        self._is_released = False

    def release(self) -> None:
        """Count the request as finished (safe to call more than once)."""
        if not self._is_released:
            self._is_released = True
            self._table._release(self.backend.url)

    def __enter__(self) -> Backend:
        return self.backend

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class RouteTable:
    """Thread-safe map of deployment name to routed backends, with in-flight counts per URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[Backend, ...]] = {}
        self._sticky: dict[str, str] = {}
        self._in_flight: dict[str, int] = {}
        self._is_loaded = False

    @property
    def is_loaded(self) -> bool:
        """Whether the table holds every deployment (else unknown names are not ready)."""
        return self._is_loaded

    def mark_loaded(self) -> None:
        """The table now holds every deployment: unknown names are 404 from now on."""
        self._is_loaded = True

    async def wait_loaded(self, timeout_s: float) -> bool:
        """Wait until ``mark_loaded``; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while not self._is_loaded:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_DRAIN_POLL_S)
        return True

    def switch(self, name: str, backends: Sequence[Backend]) -> None:
        """Send the next requests for ``name`` to ``backends`` (empty: known but not ready)."""
        with self._lock:
            self._routes[name] = tuple(backends)

    def remove(self, name: str) -> None:
        """Forget ``name``; its next requests get 404."""
        with self._lock:
            self._routes.pop(name, None)
            self._sticky.pop(name, None)

    def set_sticky_header(self, name: str, header: str | None) -> None:
        """Assign ``name``'s requests by this header's value (None: by request id)."""
        with self._lock:
            if header:
                self._sticky[name] = header.lower()
            else:
                self._sticky.pop(name, None)

    def sticky_header(self, name: str) -> str | None:
        """The header that keys ``name``'s variant assignment, if any."""
        with self._lock:
            return self._sticky.get(name)

    def shadows(self, name: str) -> tuple[Backend, ...]:
        """Backends that receive mirrored copies of ``name``'s requests."""
        with self._lock:
            return tuple(b for b in self._routes.get(name, ()) if b.mirror_percent > 0)

    def snapshot(self) -> dict[str, tuple[Backend, ...]]:
        """A copy of every route."""
        with self._lock:
            return dict(self._routes)

    def lease(self, name: str, *, key: str | None = None, avoid_url: str | None = None) -> Lease:
        """Pick a backend for one request (``choose_variant`` by ``key``; a random key if
        None) and count it in flight until the lease is released.

        Raises ``DeploymentNotFound`` for an unknown name (``NotReady`` until the table is
        loaded) and ``NotReady`` when no backend is routed (or the only one is ``avoid_url``).
        """
        with self._lock:
            if name not in self._routes and not self._is_loaded:
                raise NotReady(f"routes are not loaded yet; deployment {name!r} may exist")
            if name not in self._routes:
                raise DeploymentNotFound(f"no deployment named {name!r}")
            backends = [b for b in self._routes[name] if b.url != avoid_url and b.weight > 0]
            if not backends:
                raise NotReady(f"deployment {name!r} has no ready backend")
            backend = choose_variant(backends, key if key is not None else uuid.uuid4().hex)
            self._in_flight[backend.url] = self._in_flight.get(backend.url, 0) + 1
        return Lease(self, name, backend)

    def in_flight(self, url: str) -> int:
        """Requests currently being forwarded to ``url``."""
        with self._lock:
            return self._in_flight.get(url, 0)

    async def wait_drained(self, url: str, timeout_s: float) -> bool:
        """Wait until nothing is in flight to ``url``; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight(url) > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_DRAIN_POLL_S)
        return True

    def _release(self, url: str) -> None:
        with self._lock:
            left = self._in_flight.get(url, 0) - 1
            if left > 0:
                self._in_flight[url] = left
            else:
                self._in_flight.pop(url, None)
