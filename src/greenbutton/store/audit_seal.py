"""``AuditSeal``: the key that authenticates audit entries, kept outside the store, and the
head anchor that records how far the log reached.

Anyone who can write the store can rewrite an entry and recompute the SHA-256 chain after it;
without the key they cannot compute the entry's ``mac`` (HMAC-SHA256 of its hash, which
chains every earlier entry). Anyone can delete the newest entries; the anchor — the last
entry's seq and hash, written after each append to a file next to the key and to the log —
shows that the log once reached further.

The key file (mode 0600) holds the key and ``sealed_from``: entries from that seq on must
carry a valid mac (older ones were written before the key existed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchor:
    """A point the log is known to have reached: entry ``seq`` had hash ``hash``."""

    seq: int
    hash: str
    where: str

    @classmethod
    def parse(cls, text: str, where: str) -> Anchor:
        """``SEQ:HASH`` (what ``audit verify --head`` takes and the log prints)."""
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise InvalidInput(f"an audit head is SEQ:HASH (64 hex digits), not {text!r}",
                               field="head")
        return cls(int(seq), digest.lower(), where)


class AuditSeal:
    """HMACs audit entries with a key the store never sees, and anchors the head.

    Usage::

        seal = AuditSeal.open(Path("audit.key"), create_from_seq=lambda: 1)
        seal.mac(entry.hash); seal.is_authentic(entry.hash, entry.mac)
    """

    def __init__(self, key: bytes, sealed_from: int, head_file: Path | None) -> None:
        self._key = key
        self.sealed_from = sealed_from
        self.head_file = head_file
        self._anchoring = threading.Lock()

    @classmethod
    def open(cls, key_file: Path, *, create_from_seq: int | None = None) -> AuditSeal:
        """The seal in ``key_file``; with ``create_from_seq``, a new key is written there
        (0600) if the file does not exist, sealing entries from that seq on."""
        try:
            fields = json.loads(key_file.read_text())
        except FileNotFoundError:
            if create_from_seq is None:
                raise InvalidInput(f"no audit key at {key_file}",
                                   field="audit_key_file") from None
            fields = {"key": secrets.token_hex(32), "sealed_from": create_from_seq}
            _write_private(key_file, json.dumps(fields), is_durable=True)
            log.info("created the audit key %s (entries from %d on are sealed)", key_file,
                     create_from_seq)
        except (ValueError, OSError) as error:
            raise InvalidInput(f"unreadable audit key {key_file}: {error}",
                               field="audit_key_file") from error
        return cls(bytes.fromhex(fields["key"]), int(fields["sealed_from"]),
                   key_file.with_name(key_file.name + ".head"))

    def mac(self, entry_hash: str) -> str:
        """The mac of an entry with hash ``entry_hash``."""
        return hmac.new(self._key, entry_hash.encode(), hashlib.sha256).hexdigest()

    def is_authentic(self, entry_hash: str, mac: str | None) -> bool:
        """Whether ``mac`` was made with this key for ``entry_hash``."""
        return mac is not None and hmac.compare_digest(self.mac(entry_hash), mac)

    def anchor(self, seq: int, entry_hash: str) -> None:
        """Record that the log reached ``seq`` (never moves the file's anchor back)."""
        log.info("audit head %d:%s", seq, entry_hash)
        if self.head_file is None:
            return
        with self._anchoring:
            current = self.anchors()
            if current and current[0].seq >= seq:
                return
            try:
                _write_private(self.head_file, f"{seq}:{entry_hash}\n")
            except OSError:  # the entry is committed; a later append anchors again
                log.warning("could not write the audit head to %s", self.head_file,
                            exc_info=True)

    def anchors(self) -> list[Anchor]:
        """The anchor in the head file, if there is one."""
        if self.head_file is None:
            return []
        try:
            return [Anchor.parse(self.head_file.read_text(), str(self.head_file))]
        except (OSError, InvalidInput):
            return []


def _write_private(path: Path, text: str, *, is_durable: bool = False) -> None:
    """Write-then-rename, readable by the owner only (``is_durable``: on disk before the
    rename; an anchor lost in a crash only lags, the key must not be)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
        if is_durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(partial, path)
