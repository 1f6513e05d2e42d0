"""Pure traffic decisions: which variant answers a request, and whether it is mirrored.

Both hash a key (a sticky header's value, else the request id) into a point in [0, 1), so the
same key always lands on the same variant while the weights stay the same. Usage::

    backend = choose_variant(backends, key="user-42")   # weighted, sticky by key
    if is_mirrored(10, key="user-42"): ...              # in the 10 % mirrored to a shadow
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..reconcile import Backend

_SCALE = float(2**64)


def key_point(key: str, salt: str = "") -> float:
    """A uniform point in [0, 1) derived from ``key`` (stable across processes and runs)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose_variant(split: Sequence[Backend], key: str) -> Backend:
    """The backend whose weight bucket holds ``key``'s point; ValueError if all weigh 0."""
    total = sum(backend.weight for backend in split if backend.weight > 0)
    if total <= 0:
        raise ValueError("no backend with a positive weight")
    target = key_point(key, "variant") * total
    upto = 0.0
    chosen = split[0]
    for backend in split:
        if backend.weight <= 0:
            continue
        chosen = backend
        upto += backend.weight
        if target < upto:
            break
    return chosen


def is_mirrored(percent: int, key: str) -> bool:
    """Whether a request with ``key`` is in the ``percent`` % copied to a shadow."""
    return key_point(key, "shadow") * 100 < percent
