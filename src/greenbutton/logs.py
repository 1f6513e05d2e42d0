"""How greenbutton's long-running commands (``up``, ``serve``) write their log to stderr."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
QUIET = ("httpx", "alembic")
"""Loggers kept to warnings: one line per proxied request; MLflow's store migrations."""


def configure(level: int = logging.INFO) -> None:
    """Timestamped ``LEVEL logger: message`` lines at ``level`` (unless logging is set up)."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
