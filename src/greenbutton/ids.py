"""Request ids: UUID version 7 (RFC 9562) as 32 hex digits, ordered by creation time.

The payload log indexes every request by its id. Random ids (UUID 4) land on random pages of
that index, so each flush rewrites pages all over it, and the cost per row grows with the
table (measured on SQLite, 300 k rows logged: 36 µs of CPU per row written with random ids,
6 µs with time-ordered ones). A version 7 id starts with the Unix time in milliseconds, so
new ids sort after old ones and their index entries are appended; the other 74 bits are
random, so ids stay unguessable and unique across processes. Same shape as ``uuid4().hex``.
"""

from __future__ import annotations

import os
import time

_RAND_A_BITS = 12
_RAND_B_BITS = 62


def new_request_id() -> str:
    """A fresh UUID 7 as 32 lowercase hex digits (time-ordered to the millisecond)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10))  # 80 random bits, 74 of them used
    rand_a = rand >> (80 - _RAND_A_BITS)
    rand_b = rand & ((1 << _RAND_B_BITS) - 1)
    value = ((millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64
             | 0b10 << _RAND_B_BITS | rand_b)
    return f"{value:032x}"
