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


class FailureStreaks:
    """Logs a periodic step's failures without flooding: the first of a streak with its
    traceback (a warning), the repeats as one-line debug messages, and the recovery (info).
    A store whose disk is full fails every few seconds in every worker; one traceback says it.

    Usage::

        streaks = FailureStreaks(logger)
        try:
            claim()
            streaks.succeeded("claiming the drift test")
        except Exception:
            streaks.failed("claiming the drift test", "; testing anyway")
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._counts: dict[str, int] = {}

    def failed(self, step: str, then: str = "") -> None:
        """Log the exception being handled as a failure of ``step`` (``then``: what happens
        instead, appended to the message)."""
        count = self._counts[step] = self._counts.get(step, 0) + 1
        if count == 1:
            self._logger.warning("%s failed%s", step, then, exc_info=True)
        else:
            self._logger.debug("%s failed again (%d in a row)%s", step, count, then)

    def succeeded(self, step: str) -> None:
        """``step`` worked: say so if it had been failing."""
        count = self._counts.pop(step, 0)
        if count:
            self._logger.info("%s works again (after %d failures)", step, count)
