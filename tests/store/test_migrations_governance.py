"""Migration 0003 upgrades an empty database and one created at 0002 (the previous release)
with data in it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from greenbutton.errors import StaleState
from greenbutton.store.engine import create_store_engine
from greenbutton.store.governance_records import AuditEvent
from greenbutton.store.governance_sql import open_governance_store
from greenbutton.store.migrate import _config, engine_revision, head_revision, upgrade
from postgres_server import new_database

GOVERNANCE_TABLES = {"principals", "tokens", "grants", "model_policies", "transition_requests",
                     "gate_results", "audit_log"}


def fresh_uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database: a new SQLite file, or a new database on the test PostgreSQL."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'gb.db'}"
    return new_database(request.getfixturevalue("postgres_uri"), "mig")


def upgrade_to(uri: str, revision: str) -> None:
    """Migrate ``uri`` to ``revision`` exactly as a release at that revision would have."""
    engine = create_store_engine(uri)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_empty_database_creates_governance_tables(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    uri = fresh_uri(kind, tmp_path, request)
    assert upgrade(uri) == head_revision()
    engine = create_store_engine(uri)
    assert GOVERNANCE_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_from_0002_keeps_data(kind: str, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    uri = fresh_uri(kind, tmp_path, request)
    upgrade_to(uri, "0002")
    engine = create_store_engine(uri)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO version_stages (model_key, version, model, stage, updated_at, "
            "updated_by) VALUES ('k', 3, 'digits', 'Production', :at, 'alice')"), {"at": now})
        connection.execute(text(
            "INSERT INTO deployment_specs (name, spec, revision, updated_at, updated_by) "
            "VALUES ('digits', '{}', 1, :at, 'alice')"), {"at": now})
    assert engine_revision(engine) == "0002"
    engine.dispose()

    store = open_governance_store(uri)  # migrates to head on open
    store.create_principal("bob", "user", "maintainer", by="t",
                           events=[AuditEvent("t", "principal.create", "principal:bob")])
    store.close()
    engine = create_store_engine(uri)
    with engine.connect() as connection:
        stage = connection.execute(text("SELECT stage FROM version_stages")).scalar_one()
        spec = connection.execute(text("SELECT name FROM deployment_specs")).scalar_one()
    assert (stage, spec, engine_revision(engine)) == ("Production", "digits", head_revision())
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_from_0003_keeps_the_chain_and_one_pending_request_per_move(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    uri = fresh_uri(kind, tmp_path, request)
    upgrade_to(uri, "0003")
    engine = create_store_engine(uri)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for proposer in ("ann", "bob"):  # possible before 0004: the same move twice
            connection.execute(text(
                "INSERT INTO transition_requests (model_key, model, version, to_stage, status, "
                "proposer, created_at, is_override) VALUES ('k', 'digits', 2, 'Production', "
                "'pending', :who, :at, false)"), {"who": proposer, "at": now})
    engine.dispose()
    store = open_governance_store(uri)
    store.append_audit([AuditEvent("t", "x", "y")])
    statuses = {(r.proposer, r.status, r.kind) for r in store.list_requests()}
    assert statuses == {("bob", "pending", "transition"), ("ann", "failed", "transition")}
    assert store.audit_entries()[0].mac is None  # written without a key
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_from_0004_keeps_requests_and_counts_gating_as_open(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    uri = fresh_uri(kind, tmp_path, request)
    upgrade_to(uri, "0004")
    engine = create_store_engine(uri)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO transition_requests (model_key, model, version, to_stage, status, "
            "proposer, created_at, is_override, kind) VALUES ('k', 'digits', 2, 'Production', "
            "'pending', 'ann', :at, false, 'transition')"), {"at": datetime.now(UTC)})
    engine.dispose()
    store = open_governance_store(uri)
    (kept,) = store.list_requests()
    assert (kept.proposer, kept.status) == ("ann", "pending")
    gating = store.create_request("digits", 3, "Production", "gating", "bob", None, [],
                                  events=[], lease_s=5.0)
    with pytest.raises(StaleState, match=f"request #{gating.id} .* already gating"):
        store.create_request("digits", 3, "Production", "gating", "cy", None, [], events=[],
                             lease_s=5.0)
    store.close()
