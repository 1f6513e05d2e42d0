"""Live numbers of one deployment: scrape each routed backend's ``/metrics``, keep history.

The control plane scrapes server-side (the browser never talks to serving processes); the
page polls ``GET /deployments/{name}/live`` every few seconds and gets JSON for its charts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import httpx

from ...controller.loop import Controller, DeploymentStatus
from ...controller.routes import RouteTable
from .series import MetricsHistory, Point, Scrape, VersionCounters, parse_metrics

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
MIN_SCRAPE_INTERVAL_S = 1.0
"""Several open pages share one scrape per second instead of each triggering its own."""
MAX_QUALITY_POINTS = 180
QUALITY_FIGURES = ("outlier_rate", "accuracy", "mean_reward")
"""What a serving process's ``GET /monitoring`` reports per version, charted over time."""


class LiveMetrics:
    """Scrapes the backends of a deployment on demand and serves its recent series."""

    def __init__(self, routes: RouteTable, controller: Controller,
                 history: MetricsHistory | None = None) -> None:
        self._routes = routes
        self._controller = controller
        self._history = history or MetricsHistory()
        self._lock = asyncio.Lock()
        self._monitoring: dict[str, dict[str, dict[str, Any]]] = {}
        self._quality: dict[str, deque[dict[str, Any]]] = {}

    def status(self, name: str) -> DeploymentStatus | None:
        """The controller's view of deployment ``name`` (None: unknown)."""
        return next((s for s in self._controller.status() if s.name == name), None)

    def backend_urls(self, name: str) -> dict[str, str]:
        """version → base URL of every backend routed for ``name`` (shadows included)."""
        urls = {str(b.version): b.url for b in self._routes.snapshot().get(name, ())}
        status = self.status(name)
        if not urls and status is not None and status.backend_url:
            urls[str(status.serving_version or status.version)] = status.backend_url
        return urls

    async def refresh(self, name: str) -> None:
        """Scrape ``name``'s backends unless another caller did within the last second."""
        async with self._lock:
            last = self._history.last_at_s(name)
            if last is not None and time.time() - last < MIN_SCRAPE_INTERVAL_S:
                return
            urls = self.backend_urls(name)
            if not urls:
                return
            async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S, trust_env=False) as http:
                found = await asyncio.gather(*(_scrape(http, url) for url in urls.values()))
                watched = await asyncio.gather(*(_monitoring(http, u) for u in urls.values()))
            versions: dict[str, VersionCounters] = {}
            for counters in found:
                versions.update(counters)
            now = time.time()
            self._history.add(name, Scrape(at_s=now, versions=versions))
            self._record_quality(name, now, dict(zip(urls, watched, strict=True)))

    def _record_quality(self, name: str, at_s: float,
                        watched: dict[str, dict[str, Any] | None]) -> None:
        """Keep each version's latest ``/monitoring`` snapshot and a short quality series."""
        latest = {v: snap for v, snap in watched.items() if snap}
        self._monitoring[name] = latest
        series = self._quality.setdefault(name, deque(maxlen=MAX_QUALITY_POINTS))
        for version, snap in sorted(latest.items()):
            series.append({"t": round(at_s, 3), "version": version,
                           **{k: _number(snap.get(k)) for k in QUALITY_FIGURES}})

    async def snapshot(self, name: str) -> dict[str, Any]:
        """Status, totals per version and the recent points, as plain JSON."""
        await self.refresh(name)
        status = self.status(name)
        latest = self._history.latest(name)
        return {
            "name": name,
            "status": None if status is None else status.model_dump(mode="json"),
            "scraped_at": None if latest is None else latest.at_s,
            "totals": {} if latest is None else {
                v: {"requests": c.requests, "errors": c.errors}
                for v, c in sorted(latest.versions.items())
            },
            "points": [_plain(p) for p in self._history.points(name)],
            "monitoring": self._monitoring.get(name, {}),
            "quality": list(self._quality.get(name, ())),
        }


async def _scrape(http: httpx.AsyncClient, base_url: str) -> dict[str, VersionCounters]:
    """One backend's counters; an unreachable backend counts as no data, not an error."""
    try:
        response = await http.get(base_url.rstrip("/") + "/metrics")
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.info("scraping %s failed: %s", base_url, error)
        return {}
    return parse_metrics(response.text)


async def _monitoring(http: httpx.AsyncClient, base_url: str) -> dict[str, Any] | None:
    """One backend's ``GET /monitoring`` snapshot; None when it has none (yet)."""
    try:
        response = await http.get(base_url.rstrip("/") + "/monitoring")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("drift") is not None else None


def _number(value: Any) -> float | None:
    return round(float(value), 4) if isinstance(value, int | float) else None


def _plain(point: Point) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "t": round(point.at_s, 3),
        "version": point.version,
        "rps": rounded(point.requests_per_s),
        "errors_ps": rounded(point.errors_per_s),
        "p50_ms": rounded(point.p50_ms),
        "p99_ms": rounded(point.p99_ms),
    }
