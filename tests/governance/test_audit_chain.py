"""Tampering with any one byte of any stored audit entry is found, and named exactly."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from greenbutton.governance.audit import verify_chain
from greenbutton.store.governance_records import AuditEvent
from greenbutton.store.governance_sql import SqlGovernanceStore

COLUMNS = ["at", "actor", "action", "target", "before", "after", "prev_hash", "hash"]


def fill(store: SqlGovernanceStore, entries: int = 10) -> None:
    """Append ``entries`` audit entries."""
    for i in range(entries):
        store.append_audit([AuditEvent(f"user-{i}", "request.approve", f"model:m/{i}",
                                       before="pending", after={"i": i, "ünï": "✓"})])


def flip_one_byte(path: str, seq: int, column: str) -> None:
    """XOR one byte of one stored value, the way an attacker with file access would."""
    with sqlite3.connect(path) as connection:
        (value,) = connection.execute(
            f"SELECT {column} FROM audit_log WHERE seq = ?", (seq,)).fetchone()
        raw = bytearray(value.encode())
        raw[len(raw) // 2] ^= 0x01
        connection.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?",
                           (raw.decode(errors="replace"), seq))


def test_untouched_chain_is_intact(governance_store: SqlGovernanceStore) -> None:
    fill(governance_store)
    report = verify_chain(governance_store)
    assert report.is_intact and report.checked == 10


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("seq", [1, 6, 10])
def test_flipped_byte_names_exactly_that_entry(
        governance_store: SqlGovernanceStore, tmp_path: object, seq: int, column: str) -> None:
    fill(governance_store)
    path = str(governance_store._engine.url.database)
    flip_one_byte(path, seq, column)
    report = verify_chain(governance_store)
    assert report.broken_seq == seq


def test_deleted_entry_is_named(governance_store: SqlGovernanceStore) -> None:
    fill(governance_store)
    with sqlite3.connect(str(governance_store._engine.url.database)) as connection:
        connection.execute("DELETE FROM audit_log WHERE seq = 4")
    assert verify_chain(governance_store).broken_seq == 4


def test_cli_audit_verify_names_the_flipped_entry(governance_store: SqlGovernanceStore,
                                                  tmp_path: Path) -> None:
    fill(governance_store)
    path = str(governance_store._engine.url.database)
    env = {**os.environ, "GREENBUTTON_HOME": str(tmp_path / "home"),
           "GREENBUTTON_STORE__URI": f"sqlite:///{path}"}
    command = [sys.executable, "-m", "greenbutton", "audit", "verify"]
    intact = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert intact.returncode == 0, intact.stderr
    flip_one_byte(path, 6, "actor")
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert "BROKEN at entry 6:" in broken.stdout
