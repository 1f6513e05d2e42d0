"""``python -m greenbutton`` is the ``greenbutton`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
