"""API tokens: random, shown once, stored as a SHA-256 hash; the local admin token file."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

TOKEN_PREFIX = "gb_"
TOKEN_FILE = "admin.token"
"""File under ``settings.home`` holding the first admin's token (mode 0600, embedded default)."""


def new_token() -> tuple[str, str]:
    """A fresh ``(token_id, secret)``; the secret is what callers send as a bearer token."""
    return secrets.token_hex(8), TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a token (its secret has 256 random bits: no slow hash needed)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_secret(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer …`` header value, else ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


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
