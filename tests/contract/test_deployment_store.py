"""One suite for every DeploymentStore backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenbutton.errors import StaleState
from greenbutton.store import LifecycleStore, MemoryStore, open_store
from greenbutton.store.deployment_memory import MemoryDeploymentStore
from greenbutton.store.deployments import deployment_store_for
from greenbutton.store.protocol import DeploymentStore

# "postgres" is a real server started for the session (or GREENBUTTON_TEST_STORE_URI)
BACKENDS = ["memory", "sqlite", "postgres"]
SPEC: dict[str, object] = {"model": "wine", "routes": [{"to": "production", "weight": 80}]}


@pytest.fixture(params=BACKENDS)
def specs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeploymentStore]:
    """Each backend's deployment store, on a fresh lifecycle store."""
    if request.param == "memory":
        lifecycle: LifecycleStore = MemoryStore()
    elif request.param == "sqlite":
        lifecycle = open_store(f"sqlite:///{tmp_path / 'store' / 'gb.db'}")
    else:
        lifecycle = open_store(request.getfixturevalue("postgres_uri"))
    yield deployment_store_for(lifecycle)
    lifecycle.close()


@pytest.fixture
def name() -> str:
    """A deployment name no other test uses."""
    return f"dep-{uuid.uuid4().hex[:20]}"


def test_put_spec_then_get_returns_it(specs: DeploymentStore, name: str) -> None:
    saved = specs.put_spec(name, SPEC, actor="alice")
    got = specs.get_spec(name)
    assert got is not None
    assert (got.spec, got.revision, got.updated_by) == (SPEC, 1, "alice")
    assert got.updated_at.tzinfo is not None
    assert saved.revision == 1


def test_put_spec_again_bumps_revision(specs: DeploymentStore, name: str) -> None:
    specs.put_spec(name, SPEC, actor="alice")
    again = specs.put_spec(name, {"model": "wine"}, actor="bob", expected_revision=1)
    assert again.revision == 2
    got = specs.get_spec(name)
    assert got is not None and got.spec == {"model": "wine"}


def test_put_spec_stale_revision_raises(specs: DeploymentStore, name: str) -> None:
    specs.put_spec(name, SPEC, actor="alice")
    with pytest.raises(StaleState):
        specs.put_spec(name, SPEC, actor="bob", expected_revision=0)


def test_get_spec_missing_returns_none(specs: DeploymentStore, name: str) -> None:
    assert specs.get_spec(name) is None


def test_list_specs_sorted_by_name(specs: DeploymentStore, name: str) -> None:
    specs.put_spec(name + "-b", SPEC, actor="a")
    specs.put_spec(name + "-a", SPEC, actor="a")
    mine = [s.name for s in specs.list_specs() if s.name.startswith(name)]
    assert mine == [name + "-a", name + "-b"]


def test_delete_spec_removes_it(specs: DeploymentStore, name: str) -> None:
    specs.put_spec(name, SPEC, actor="a")
    assert specs.delete_spec(name, actor="a", expected_revision=1)
    assert specs.get_spec(name) is None
    assert not specs.delete_spec(name, actor="a")


def test_returned_spec_is_a_copy(specs: DeploymentStore, name: str) -> None:
    specs.put_spec(name, {"model": "wine", "routes": []}, actor="a")
    got = specs.get_spec(name)
    assert got is not None
    got.spec["model"] = "changed"
    again = specs.get_spec(name)
    assert again is not None and again.spec["model"] == "wine"


def test_concurrent_creates_one_wins(specs: DeploymentStore, name: str) -> None:
    results: list[str] = []
    barrier = threading.Barrier(4)

    def create(i: int) -> None:
        barrier.wait()
        try:
            specs.put_spec(name, {"i": i}, actor=str(i), expected_revision=0)
            results.append("ok")
        except StaleState:
            results.append("stale")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == ["ok", "stale", "stale", "stale"]


def test_memory_lifecycle_store_gets_memory_specs() -> None:
    assert isinstance(deployment_store_for(MemoryStore()), MemoryDeploymentStore)
