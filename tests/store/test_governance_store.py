"""The governance store on SQLite and on a real PostgreSQL: identities, grants, requests,
atomic decisions, the audit chain, hostile names."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenbutton.errors import NotFound, StaleState
from greenbutton.governance.audit import verify_chain
from greenbutton.store.governance_records import AuditEvent, GateOutcome
from greenbutton.store.governance_sql import SqlGovernanceStore, open_governance_store

HOSTILE = ["o'brien \"quoted\"", "x'); DROP TABLE principals; --", "../../etc/passwd",
           "a/b\\c", "模型 ünïcode 🚀", "z" * 10_000]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlGovernanceStore]:
    """A migrated governance store on each backend (PostgreSQL is shared: unique names)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'gb.db'}"
    else:
        uri = request.getfixturevalue("postgres_uri")
    built = open_governance_store(uri)
    yield built
    built.close()


def unique(prefix: str = "p") -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex}"


def event(actor: str = "test") -> list[AuditEvent]:
    """One audit event."""
    return [AuditEvent(actor, "test", "target")]


def test_create_principal_twice_is_stale(store: SqlGovernanceStore) -> None:
    name = unique()
    store.create_principal(name, "user", "viewer", by="t", events=event())
    with pytest.raises(StaleState):
        store.create_principal(name, "user", "admin", by="t", events=event())


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_stored_verbatim(store: SqlGovernanceStore, name: str) -> None:
    suffixed = name + uuid.uuid4().hex
    store.create_principal(suffixed, "user", "viewer", by="t", events=event())
    store.grant(suffixed, suffixed, "invoke", by="t", events=event())
    found = store.get_principal(suffixed)
    assert found is not None and found.name == suffixed
    assert store.permissions_on(suffixed, suffixed) == {"invoke"}
    assert store.list_grants(suffixed)[0].model == suffixed


def test_token_lookup_finds_live_token_only(store: SqlGovernanceStore) -> None:
    name = unique()
    store.create_principal(name, "service", "viewer", by="t", events=event())
    store.add_token(name, uuid.uuid4().hex[:16], "h" + uuid.uuid4().hex, "live", None,
                    events=event())
    live = store.list_tokens(name)[0]
    secret_hash = f"{uuid.uuid4().hex}{uuid.uuid4().hex}"
    store.add_token(name, uuid.uuid4().hex[:16], secret_hash, "x", None, events=event())
    found = store.principal_for_secret(secret_hash)
    assert found is not None and found[0].name == name
    token_id = found[1]
    store.revoke_token(token_id, events=event())
    assert store.principal_for_secret(secret_hash) is None
    assert live.revoked_at is None
    with pytest.raises(NotFound):
        store.revoke_token(token_id, events=event())


def test_expired_token_is_not_live(store: SqlGovernanceStore) -> None:
    name = unique()
    store.create_principal(name, "user", "viewer", by="t", events=event())
    secret_hash = uuid.uuid4().hex * 2
    past = datetime.now(UTC) - timedelta(seconds=1)
    store.add_token(name, uuid.uuid4().hex[:16], secret_hash, "", past, events=event())
    assert store.principal_for_secret(secret_hash) is None


def test_decide_request_has_exactly_one_winner(store: SqlGovernanceStore) -> None:
    model = unique("model")
    gates = [GateOutcome("conformance", True, {})]
    request = store.create_request(model, 1, "Production", "pending", "alice", None, gates,
                                   events=event())
    barrier, won, lost = threading.Barrier(8), [], []

    def approve(who: str) -> None:
        barrier.wait()
        try:
            store.decide_request(request.id, ["pending"], "approved", by=who, reason=None,
                                 is_override=False, events=event(who))
            won.append(who)
        except StaleState:
            lost.append(who)

    threads = [threading.Thread(target=approve, args=(f"u{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1 and len(lost) == 7
    decided = store.get_request(request.id)
    assert (decided.status, decided.decided_by) == ("approved", won[0])
    assert decided.gates == tuple(gates)


def test_requests_filter_by_model_and_status(store: SqlGovernanceStore) -> None:
    model = unique("model")
    store.create_request(model, 1, "Staging", "blocked", "a", "r", [], events=event())
    store.create_request(model, 2, "Production", "pending", "a", None, [], events=event())
    assert [r.version for r in store.list_requests(model)] == [2, 1]
    assert [r.version for r in store.list_requests(model, "blocked")] == [1]


def test_four_eyes_policy_round_trips(store: SqlGovernanceStore) -> None:
    model = unique("model")
    assert store.four_eyes(model) is None
    store.set_four_eyes(model, True, by="a", events=event())
    store.set_four_eyes(model, False, by="a", events=event())
    assert store.four_eyes(model) is False


def test_concurrent_audited_writes_keep_one_chain(store: SqlGovernanceStore) -> None:
    barrier = threading.Barrier(6)

    def write(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            store.create_principal(unique(), "user", "viewer", by="t", events=event(f"w{i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    report = verify_chain(store)
    assert report.is_intact, report
    assert report.checked >= 30
