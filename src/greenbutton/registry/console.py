"""MLflow's console output kept quiet for the length of one greenbutton call.

Logging a model through MLflow prints, on every call: tqdm progress bars while it copies
artifacts (for files it just wrote), its INFO lines (creating tables, validating the input
example), a warning that ``python_model`` objects are serialized with CloudPickle (which
greenbutton does on purpose, see ``packaging._model_module_by_value``), the lines
"Successfully registered model" / "Created version", and deprecation warnings raised inside
MLflow's own code. :func:`quiet_mlflow` turns these off for the ``with`` block and restores
everything afterwards:

- progress bars: MLflow's documented switch, the ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``
  variable (read on each transfer), set to ``false`` unless the user set it;
- MLflow's event lines: its logging stream is switched off (as MLflow's own autologging
  does to silence itself), and MLflow's records at WARNING and above, except the CloudPickle
  notice, are written to stderr by a handler of this block;
- warnings: deprecation warnings whose origin is MLflow's code are ignored; every other
  warning (the user's model's included) is shown as before.

The switches are process-wide while the block runs (MLflow has no per-call ones): another
thread's MLflow output is quiet meanwhile too.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.utils import logging_utils

PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
"""MLflow's switch for its artifact transfer progress bars (mlflow.environment_variables)."""
KNOWN_NOTICES = re.compile(r"serialized using CloudPickle")
"""MLflow warnings greenbutton's own choices cause on every call, so they tell the user nothing."""
MLFLOW_LOGGERS = ("mlflow", "alembic")
"""Loggers writing through MLflow's stream (MLflow sets their handlers when imported)."""


@contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Within the block: no MLflow progress bars, INFO lines or known notices; warnings kept."""
    with _no_progress_bars(), _mlflow_warnings_only(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow(\.|$)")
        yield


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    if PROGRESS_BAR_VARIABLE in os.environ:  # the user's choice stands
        yield
        return
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        yield
    finally:
        os.environ.pop(PROGRESS_BAR_VARIABLE, None)


class _UnknownWarnings(logging.Filter):
    """MLflow's records at WARNING and above, except the known notices."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not KNOWN_NOTICES.search(
            record.getMessage())


@contextmanager
def _mlflow_warnings_only() -> Iterator[None]:
    stream = logging_utils.MLFLOW_LOGGING_STREAM
    was_enabled = stream.enabled
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(logging_utils.LOGGING_LINE_FORMAT,
                                           logging_utils.LOGGING_DATETIME_FORMAT))
    handler.addFilter(_UnknownWarnings())
    # only where MLflow's stream is the output (MLFLOW_CONFIGURE_LOGGING=false leaves its
    # loggers to the application's configuration, which is then left alone)
    loggers = [logger for logger in map(logging.getLogger, MLFLOW_LOGGERS)
               if any(getattr(h, "stream", None) is stream for h in logger.handlers)]
    stream.enabled = False
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        stream.enabled = was_enabled
