"""``greenbutton doctor``: check every configured backend and say exactly what is wrong
(``checks``), with the storage, Kubernetes and integrity checks in their own modules."""

from __future__ import annotations

from .checks import check_all, render

__all__ = ["check_all", "render"]
