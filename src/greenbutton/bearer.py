"""Bearer tokens as both planes read them: the secret in an ``Authorization`` header, and the
form it is stored and compared in (its SHA-256; the secret has 256 random bits, so no slow
hash is needed). Issuing tokens is governance's (``governance/tokens.py``)."""

from __future__ import annotations

import hashlib


def hash_secret(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_secret(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer …`` header value, else ``None``."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
