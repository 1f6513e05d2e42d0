"""Live numbers of deployments: scrape each routed backend's ``/metrics``, sample quality.

The control plane does this server-side (the browser never talks to serving processes): in the
background every ``SAMPLE_INTERVAL_S`` for every deployment, so a page opened later shows what
happened before, and on demand when a page asks (at most once a second). Usage::

    live = LiveMetrics(routes, controller, QualityHistory(open_payload_store))
    asyncio.create_task(live.run(stop))      # the control plane's lifespan
    await live.refresh("digits")              # a page's poll
    live.history.points("digits"); live.quality.tests("digits")
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from ...controller.loop import Controller, DeploymentStatus
from ...controller.routing.table import RouteTable
from .quality import QualityHistory
from .series import MetricsHistory, Scrape, VersionCounters, parse_metrics

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0
MIN_SCRAPE_INTERVAL_S = 1.0
"""Several open pages share one scrape per second instead of each triggering its own."""
SAMPLE_INTERVAL_S = 2.0
"""Background sampling of every deployment: 300 scrapes (the history) are 10 minutes."""


class LiveMetrics:
    """Scrapes the backends of deployments and keeps their recent traffic and quality."""

    def __init__(self, routes: RouteTable, controller: Controller,
                 quality: QualityHistory | None = None,
                 history: MetricsHistory | None = None) -> None:
        self._routes = routes
        self._controller = controller
        self.quality = quality
        self.history = history or MetricsHistory(max_scrapes=300)
        self._lock = asyncio.Lock()

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
        """Scrape ``name``'s backends and sample its quality, unless done within a second."""
        async with self._lock:
            last = self.history.last_at_s(name)
            if last is not None and time.time() - last < MIN_SCRAPE_INTERVAL_S:
                return
            status = self.status(name)
            urls = self.backend_urls(name)
            if status is None or not urls:
                return
            async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S, trust_env=False) as http:
                found = await asyncio.gather(*(_scrape(http, url) for url in urls.values()))
            versions: dict[str, VersionCounters] = {}
            for counters in found:
                versions.update(counters)
            now = time.time()
            self.history.add(name, Scrape(at_s=now, versions=versions))
            if self.quality is not None:
                await asyncio.to_thread(self.quality.record, name, status.model, list(urls), now)

    async def run(self, stop: asyncio.Event, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """Sample every deployment every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            for status in self._controller.status():
                try:
                    await self.refresh(status.name)
                except Exception:  # one deployment's trouble must not stop the others' history
                    log.exception("sampling %s failed", status.name)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass


async def _scrape(http: httpx.AsyncClient, base_url: str) -> dict[str, VersionCounters]:
    """One backend's counters; an unreachable backend counts as no data, not an error."""
    try:
        response = await http.get(base_url.rstrip("/") + "/metrics")
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.info("scraping %s failed: %s", base_url, error)
        return {}
    return parse_metrics(response.text)
