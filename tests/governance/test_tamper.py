"""Someone with write access to the store, but not the control plane's key, changes history
or the lifecycle behind greenbutton's back: verification and the controller notice, say
where, audit it and put the governed state back (or freeze when the log itself is broken).
On SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine, text

from greenbutton.config import Settings
from greenbutton.errors import AuditLogBroken
from greenbutton.governance.audit import verify_chain
from greenbutton.governance.integrity import LifecycleGuard
from greenbutton.registry import Registry
from greenbutton.store import Stage
from greenbutton.store.audit_seal import Anchor, AuditSeal
from greenbutton.store.engine import create_store_engine
from greenbutton.store.governance_records import AuditEvent, entry_hash
from greenbutton.store.sql import SqlStore
from greenbutton.wiring import build_store
from postgres_server import new_database


@dataclass
class Sealed:
    """A store sealed with its key, as ``greenbutton up`` opens it, and an attacker's own
    connection to the same database."""

    store: SqlStore
    seal: AuditSeal
    settings: Settings
    attacker: Engine

    def sql(self, statement: str, **params: Any) -> None:
        with self.attacker.begin() as connection:
            connection.execute(text(statement), params)

    def rehash_from(self, seq: int, *, after: str) -> None:
        """Rewrite entry ``seq`` and recompute every hash after it, as someone who knows the
        (public) hashing rule, but not the key, would."""
        with self.attacker.begin() as connection:
            rows = connection.execute(text(
                "SELECT seq, at, actor, action, target, before, after, prev_hash FROM audit_log "
                "WHERE seq >= :seq ORDER BY seq"), {"seq": seq}).all()
            prev = rows[0].prev_hash
            for row in rows:
                value = after if row.seq == seq else row.after
                digest = entry_hash(prev, row.seq, row.at, row.actor, row.action, row.target,
                                    row.before, value)
                connection.execute(text(
                    "UPDATE audit_log SET after = :after, prev_hash = :prev, hash = :hash "
                    "WHERE seq = :seq"), {"after": value, "prev": prev, "hash": digest,
                                          "seq": row.seq})
                prev = digest


@pytest.fixture(params=["sqlite", "postgres"])
def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sealed]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'gb' / 'greenbutton.db'}"
    else:
        uri = new_database(request.getfixturevalue("postgres_uri"), "tamper")
    settings = Settings(home=tmp_path / "gb", store={"uri": uri},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir(mode=0o700, exist_ok=True)
    store = build_store(settings)
    seal = store.governance_store().seal
    assert seal is not None
    attacker = create_store_engine(uri)
    yield Sealed(store, seal, settings, attacker)
    attacker.dispose()
    store.close()


def fill(store: SqlStore, entries: int = 10) -> None:
    for i in range(entries):
        store.governance_store().append_audit([AuditEvent(f"user-{i}", "request.approve",
                                                          f"model:m/{i}", after={"i": i})])


def test_rewritten_and_rehashed_entry_is_found_with_the_key(sealed: Sealed) -> None:
    store, seal = sealed.store, sealed.seal
    fill(store)
    sealed.rehash_from(6, after='{"i":"forged"}')
    assert verify_chain(store.governance_store()).is_intact  # the chain alone is fooled
    report = verify_chain(store.governance_store(), seal=seal)
    assert report.broken_seq == 6 and "audit key" in (report.problem or "")


def test_deleted_newest_entries_are_found_by_the_anchor(sealed: Sealed) -> None:
    store, seal = sealed.store, sealed.seal
    fill(store)
    tail = store.governance_store().audit_tail()
    sealed.sql("DELETE FROM audit_log WHERE seq > :seq", seq=tail - 3)
    assert verify_chain(store.governance_store(), seal=seal).is_intact  # no anchor: fooled
    report = verify_chain(store.governance_store(), seal=seal, anchors=seal.anchors())
    assert report.broken_seq == tail - 2 and "truncated" in (report.problem or "")


def test_head_given_by_hand_must_still_be_reached_unchanged(sealed: Sealed) -> None:
    store, seal = sealed.store, sealed.seal
    fill(store)
    entry = store.governance_store().audit_entries()[-1]
    head = Anchor.parse(f"{entry.seq}:{entry.hash}", "--head")
    assert verify_chain(store.governance_store(), seal=seal, anchors=[head]).is_intact
    wrong = Anchor.parse(f"{entry.seq}:{'0' * 64}", "--head")
    report = verify_chain(store.governance_store(), seal=seal, anchors=[wrong])
    assert report.broken_seq == entry.seq and "rewritten" in (report.problem or "")


@pytest.fixture
def guarded(sealed: Sealed) -> tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]:
    """A guard over the sealed store, a registry with one model of three versions."""
    store, seal = sealed.store, sealed.seal
    uri = registry_uri(sealed)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = f"m-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(model)
    for _ in range(3):
        client.create_model_version(model, source="file:///nowhere")
    registry = Registry(client, store)
    guard = LifecycleGuard(store.governance_store(), store, registry, seal=seal,
                           mirror_interval_s=0)
    return guard, store, registry, sealed, model


def registry_uri(sealed: Sealed) -> str:
    """The MLflow registry in the home."""
    return f"sqlite:///{sealed.settings.home / 'mlflow.db'}"


def versions_in(guard: LifecycleGuard, stage: Stage) -> list[int]:
    return [s.version for s in guard.governed_states() if s.stage is stage]


def test_stage_row_written_behind_our_back_deploys_nothing_and_is_put_back(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    guard, store, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    assert versions_in(guard, Stage.PRODUCTION) == [1]
    # v1 out, v3 in, no history, no audit entry
    sealed.sql("UPDATE version_stages SET stage = 'Archived' WHERE version = 1")
    sealed.sql("INSERT INTO version_stages SELECT model_key, 3, model, 'Production', "
               "updated_at, 'mallory' FROM version_stages WHERE version = 1")
    assert versions_in(guard, Stage.PRODUCTION) == [1]
    assert store.stage_of(model, 3) is Stage.NONE and store.stage_of(model, 1) is Stage.PRODUCTION
    assert {(d.version, d.stored, d.governed) for d in guard.report().repaired_stages} == {
        (1, Stage.ARCHIVED, Stage.PRODUCTION), (3, Stage.PRODUCTION, Stage.NONE)}
    repairs = store.governance_store().audit_entries(actions=["lifecycle.repair"])
    assert len(repairs) == 2


def test_alias_set_in_mlflow_is_reported_and_put_back(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    guard, store, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    mlflow = MlflowClient(tracking_uri=registry_uri(sealed), registry_uri=registry_uri(sealed))
    mlflow.set_registered_model_alias(model, "production", "3")
    guard.governed_states()
    assert int(mlflow.get_model_version_by_alias(model, "production").version) == 1
    (drift,) = guard.report().repaired_aliases
    assert (drift.alias, drift.mlflow_version, drift.lifecycle_version) == ("production", 3, 1)
    assert store.governance_store().audit_entries(actions=["registry.repair"])


def test_forged_lifecycle_entry_freezes_the_controller(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    guard, store, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    seq = store.governance_store().audit_entries(actions=["lifecycle.transition"])[-1].seq
    sealed.rehash_from(seq, after=f'{{"model":"{model}","version":3,"stage":"Production"}}')
    with pytest.raises(AuditLogBroken):
        guard.governed_states()
    assert "audit key" in (guard.report().problem or "")


def test_truncated_log_freezes_a_running_guard(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    guard, store, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    guard.governed_states()
    registry.transition(model, 2, Stage.PRODUCTION, actor="alice")
    guard.governed_states()
    tail = store.governance_store().audit_tail()  # the promotion of v2 "never happened":
    sealed.sql("DELETE FROM audit_log WHERE seq > :seq", seq=tail - 2)
    with pytest.raises(AuditLogBroken):
        guard.governed_states()
    assert "truncated" in (guard.report().problem or "")


def test_a_new_guard_finds_truncation_from_the_anchor(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    guard, store, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    registry.transition(model, 2, Stage.PRODUCTION, actor="alice")
    tail = store.governance_store().audit_tail()
    sealed.sql("DELETE FROM audit_log WHERE seq > :seq", seq=tail - 2)
    seal = store.governance_store().seal
    restarted = LifecycleGuard(store.governance_store(), store, registry, seal=seal)
    with pytest.raises(AuditLogBroken):
        restarted.governed_states()


def test_serving_an_alias_serves_the_governed_version(
        guarded: tuple[LifecycleGuard, SqlStore, Registry, Sealed, str]) -> None:
    _, _, registry, sealed, model = guarded
    registry.transition(model, 1, Stage.PRODUCTION, actor="alice")
    mlflow = MlflowClient(tracking_uri=registry_uri(sealed), registry_uri=registry_uri(sealed))
    mlflow.set_registered_model_alias(model, "production", "3")
    assert registry.governed_uri(f"models:/{model}@production") == f"models:/{model}/1"
    assert registry.governed_uri(f"models:/{model}@champion") == f"models:/{model}@champion"


def test_doctor_reports_what_changed_behind_our_back(sealed: Sealed) -> None:
    from greenbutton.doctor.integrity import check_integrity

    sealed.sql("INSERT INTO version_stages VALUES (:key, 7, 'm', 'Production', "
               "'2026-01-01 00:00:00', 'mallory')", key="0" * 64)
    verdicts = {f.backend: f for f in check_integrity(sealed.settings)}
    assert verdicts["audit"].ok and "sealed" in verdicts["audit"].message
    assert not verdicts["lifecycle"].ok and "m v7 is Production" in verdicts["lifecycle"].message
