"""One suite for every LifecycleStore backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import random
import string
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from greenbutton.errors import StaleState
from greenbutton.store import LifecycleStore, MemoryStore, Stage, StageChange, open_store

# incompressible, so a database cannot squeeze it into an index entry
TEN_KB = "".join(random.Random(0).choices(string.ascii_letters + "ünï模", k=10_000))
# "postgres" is a real server started for the session (or GREENBUTTON_TEST_STORE_URI)
BACKENDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LifecycleStore]:
    """Each backend, fresh (the shared PostgreSQL database is isolated by unique model names)."""
    if request.param == "memory":
        built: LifecycleStore = MemoryStore()
    elif request.param == "sqlite":
        built = open_store(f"sqlite:///{tmp_path / 'store' / 'gb.db'}")
    else:
        built = open_store(request.getfixturevalue("postgres_uri"))
    yield built
    built.close()


@pytest.fixture
def model() -> str:
    """A model name no other test uses."""
    return f"model-{uuid.uuid4().hex}"


def promote(store: LifecycleStore, model: str, version: int, to: Stage = Stage.PRODUCTION) -> None:
    """Move a version from wherever it is to ``to``."""
    change = StageChange(model, version, store.stage_of(model, version), to)
    store.apply_transitions([change], actor="setup")


def test_stage_of_unknown_version_is_none(store: LifecycleStore, model: str) -> None:
    assert store.stage_of(model, 1) is Stage.NONE


def test_apply_transitions_sets_stage(store: LifecycleStore, model: str) -> None:
    store.apply_transitions([StageChange(model, 1, Stage.NONE, Stage.STAGING)], actor="alice")
    assert store.stage_of(model, 1) is Stage.STAGING


def test_apply_transitions_returns_recorded_transitions(store: LifecycleStore, model: str) -> None:
    done = store.apply_transitions(
        [StageChange(model, 1, Stage.NONE, Stage.PRODUCTION)], actor="alice", reason="ship it"
    )
    assert [(t.model, t.version, t.from_stage, t.to_stage, t.actor, t.reason) for t in done] == [
        (model, 1, Stage.NONE, Stage.PRODUCTION, "alice", "ship it")
    ]
    assert done == store.history(model)


def test_apply_transitions_times_are_utc_aware(store: LifecycleStore, model: str) -> None:
    (done,) = store.apply_transitions([StageChange(model, 1, Stage.NONE, Stage.STAGING)], actor="a")
    (state,) = store.list_states(model)
    (recorded,) = store.history(model)
    assert done.at.utcoffset() is not None and done.at.tzinfo is UTC
    assert state.updated_at.tzinfo is UTC and recorded.at.tzinfo is UTC
    assert recorded.at == done.at == state.updated_at


def test_apply_transitions_records_updated_by(store: LifecycleStore, model: str) -> None:
    store.apply_transitions([StageChange(model, 1, Stage.NONE, Stage.STAGING)], actor="bob")
    (state,) = store.list_states(model)
    assert (state.model, state.version, state.stage, state.updated_by) == (
        model,
        1,
        Stage.STAGING,
        "bob",
    )


def test_apply_transitions_empty_batch_returns_nothing(store: LifecycleStore, model: str) -> None:
    assert store.apply_transitions([], actor="alice") == []
    assert store.history(model) == []


def test_apply_transitions_stale_from_stage_raises(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1, Stage.STAGING)
    with pytest.raises(StaleState):
        store.apply_transitions([StageChange(model, 1, Stage.NONE, Stage.PRODUCTION)], actor="a")
    assert store.stage_of(model, 1) is Stage.STAGING


def test_apply_transitions_unrecorded_version_not_none_raises(
    store: LifecycleStore, model: str
) -> None:
    with pytest.raises(StaleState):
        store.apply_transitions([StageChange(model, 1, Stage.STAGING, Stage.PRODUCTION)], actor="a")
    assert store.list_states(model) == []


def test_apply_transitions_stale_batch_changes_nothing(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1)
    before = (store.list_states(model), store.history(model))
    batch = [
        StageChange(model, 1, Stage.PRODUCTION, Stage.ARCHIVED),
        StageChange(model, 2, Stage.NONE, Stage.PRODUCTION),
        StageChange(model, 3, Stage.STAGING, Stage.PRODUCTION),  # stale: 3 was never staged
    ]
    with pytest.raises(StaleState):
        store.apply_transitions(batch, actor="alice")
    assert (store.list_states(model), store.history(model)) == before


def test_apply_transitions_chained_changes_apply_in_order(
    store: LifecycleStore, model: str
) -> None:
    batch = [
        StageChange(model, 1, Stage.NONE, Stage.STAGING),
        StageChange(model, 1, Stage.STAGING, Stage.PRODUCTION),
    ]
    store.apply_transitions(batch, actor="alice")
    assert store.stage_of(model, 1) is Stage.PRODUCTION


def test_apply_transitions_second_version_into_production_raises(
    store: LifecycleStore, model: str
) -> None:
    promote(store, model, 1)
    with pytest.raises(StaleState):
        store.apply_transitions([StageChange(model, 2, Stage.NONE, Stage.PRODUCTION)], actor="a")
    assert [(s.version, s.stage) for s in store.list_states(model)] == [(1, Stage.PRODUCTION)]


def test_apply_transitions_incumbent_moved_out_first_allows_promotion(
    store: LifecycleStore, model: str
) -> None:
    promote(store, model, 1, Stage.STAGING)
    batch = [
        StageChange(model, 1, Stage.STAGING, Stage.ARCHIVED),
        StageChange(model, 2, Stage.NONE, Stage.STAGING),
    ]
    store.apply_transitions(batch, actor="alice")
    assert [(s.version, s.stage) for s in store.list_states(model)] == [
        (1, Stage.ARCHIVED),
        (2, Stage.STAGING),
    ]


def test_apply_transitions_archived_holds_many_versions(store: LifecycleStore, model: str) -> None:
    for version in (1, 2, 3):
        promote(store, model, version, Stage.ARCHIVED)
    assert [s.version for s in store.versions_in(Stage.ARCHIVED) if s.model == model] == [1, 2, 3]


def test_apply_transitions_same_stage_other_models_coexist(
    store: LifecycleStore, model: str
) -> None:
    promote(store, model, 1)
    promote(store, model + "-other", 1)
    mine = [s.model for s in store.versions_in(Stage.PRODUCTION) if s.model.startswith(model)]
    assert mine == [model, model + "-other"]


def test_history_is_oldest_first(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1, Stage.STAGING)
    promote(store, model, 2, Stage.ARCHIVED)
    promote(store, model, 1, Stage.PRODUCTION)
    promote(store, model, 1, Stage.ARCHIVED)
    steps = [(t.version, t.to_stage) for t in store.history(model)]
    assert steps == [
        (1, Stage.STAGING),
        (2, Stage.ARCHIVED),
        (1, Stage.PRODUCTION),
        (1, Stage.ARCHIVED),
    ]
    ids = [t.id for t in store.history(model)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_history_of_one_version_filters(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1)
    promote(store, model, 2, Stage.STAGING)
    assert [t.version for t in store.history(model, 2)] == [2]


def test_history_of_other_model_is_separate(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1)
    assert store.history(model + "-other") == []


def test_list_states_orders_by_model_and_version(store: LifecycleStore, model: str) -> None:
    for version in (10, 2, 1):
        promote(store, model + "-b", version, Stage.ARCHIVED)
        promote(store, model + "-a", version, Stage.ARCHIVED)
    mine = [(s.model, s.version) for s in store.list_states() if s.model.startswith(model)]
    assert mine == [(model + m, v) for m in ("-a", "-b") for v in (1, 2, 10)]


def test_list_states_of_one_model_filters(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1)
    promote(store, model + "x", 1)
    assert [s.model for s in store.list_states(model)] == [model]


def test_versions_in_lists_only_that_stage(store: LifecycleStore, model: str) -> None:
    promote(store, model, 1, Stage.PRODUCTION)
    promote(store, model, 2, Stage.ARCHIVED)
    promote(store, model, 3, Stage.ARCHIVED)
    archived = [s.version for s in store.versions_in(Stage.ARCHIVED) if s.model == model]
    assert archived == [2, 3]


@pytest.mark.parametrize(
    "suffix",
    [
        'it\'s "quoted" `back`',
        "'; DROP TABLE version_stages; --",
        "x' OR '1'='1",
        "ünïcødé 模型 🚀",
        "percent %s %(name)s \\ backslash",
        TEN_KB,
    ],
    ids=["quotes", "sql-drop", "sql-or", "unicode", "format-chars", "10kB"],
)
def test_names_are_stored_verbatim(store: LifecycleStore, model: str, suffix: str) -> None:
    name = model + suffix
    store.apply_transitions([StageChange(name, 1, Stage.NONE, Stage.STAGING)], actor=suffix)
    assert [s.model for s in store.list_states(name)] == [name]
    assert [(t.model, t.actor) for t in store.history(name)] == [(name, suffix)]
    assert store.stage_of(name, 1) is Stage.STAGING
    assert store.stage_of(model, 1) is Stage.NONE


def test_long_reason_is_stored_verbatim(store: LifecycleStore, model: str) -> None:
    reason = "why? ünï ' \" ; -- " * 600  # about 10 kB
    store.apply_transitions(
        [StageChange(model, 1, Stage.NONE, Stage.STAGING)], actor="a", reason=reason
    )
    assert [t.reason for t in store.history(model)] == [reason]


@pytest.mark.parametrize(
    "start", [Stage.NONE, Stage.STAGING, None], ids=["first-row", "existing-row", "rival-versions"]
)
def test_apply_transitions_concurrently_one_wins(
    store: LifecycleStore, model: str, start: Stage | None
) -> None:
    """Contenders move the same version from ``start``, or (``None``) rival versions into
    Production; exactly one succeeds."""
    if start is not None and start is not Stage.NONE:
        promote(store, model, 1, start)
    contenders = 8
    barrier = threading.Barrier(contenders)
    outcomes: list[str] = []

    def contend(index: int) -> None:
        change = (
            StageChange(model, index + 1, Stage.NONE, Stage.PRODUCTION)
            if start is None
            else StageChange(model, 1, start, Stage.PRODUCTION)
        )
        barrier.wait()
        try:
            store.apply_transitions([change], actor=f"actor-{index}")
            outcomes.append("won")
        except StaleState:
            outcomes.append("stale")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stale"] * (contenders - 1) + ["won"]
    assert [t.to_stage for t in store.history(model)].count(Stage.PRODUCTION) == 1
    assert len([s for s in store.versions_in(Stage.PRODUCTION) if s.model == model]) == 1
