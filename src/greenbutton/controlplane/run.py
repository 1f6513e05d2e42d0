"""Run the control plane under uvicorn (``greenbutton up``)."""

from __future__ import annotations

import logging

import uvicorn
from starlette.applications import Starlette

from .. import logs
from ..config import Settings

log = logging.getLogger("greenbutton")


def run_control_plane(app: Starlette, settings: Settings) -> None:
    """Serve the control plane until SIGINT/SIGTERM; the controller stops its processes."""
    logs.configure()
    log.info("control plane on %s (home %s)", settings.server.url, settings.home)
    log.info("deployments are served at %s/endpoints/<model>/predict", settings.server.url)
    # log_config=None: uvicorn's lines go through the format above, as greenbutton's do
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level="info",
                log_config=None, access_log=False, http="httptools", loop="uvloop",
                timeout_graceful_shutdown=30)
