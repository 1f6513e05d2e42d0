"""API tokens: random, shown once, stored as a SHA-256 hash; the local admin token file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..bearer import bearer_secret, hash_secret

__all__ = ["TOKEN_FILE", "TOKEN_PREFIX", "bearer_secret", "hash_secret", "new_token",
           "write_token_file"]

TOKEN_PREFIX = "gb_"
TOKEN_FILE = "admin.token"
"""File under ``settings.home`` holding the first admin's token (mode 0600, embedded default)."""


def new_token() -> tuple[str, str]:
    """A fresh ``(token_id, secret)``; the secret is what callers send as a bearer token."""
    return secrets.token_hex(8), TOKEN_PREFIX + secrets.token_urlsafe(32)


def write_token_file(home: Path, secret: str) -> Path:
    """Save ``secret`` to ``home/admin.token`` readable by the owner only (write-then-rename)."""
    path = home / TOKEN_FILE
    partial = home / f".{TOKEN_FILE}.{os.getpid()}"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")
    os.replace(partial, path)
    return path


def read_token_file(home: Path) -> str | None:
    """The token saved by :func:`write_token_file`, if the file exists."""
    try:
        return (home / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None
