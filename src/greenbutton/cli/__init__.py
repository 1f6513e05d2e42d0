"""The ``greenbutton`` command: parse arguments, load settings, call ``wiring``; no logic.

``main`` dispatches; ``governance``, ``deploy`` and ``monitoring`` hold their commands."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
