"""``python -m greenbutton`` is the ``greenbutton`` command."""

from __future__ import annotations

from .cli.main import main

raise SystemExit(main())
