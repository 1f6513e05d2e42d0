"""Governance fixtures: a real store (SQLite), a real registry over a sandboxed MLflow, gates
that return what a test sets, and one token per role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from control_plane import StaticGates, in_process_control_plane
from greenbutton.config import Settings
from greenbutton.controller.specs import check_spec_change
from greenbutton.governance.access import Access, Caller
from greenbutton.governance.approvals import Approvals
from greenbutton.registry import Registry
from greenbutton.store import open_store
from greenbutton.store.governance_sql import SqlGovernanceStore
from greenbutton.store.sql import SqlStore
from mlflow_template import seeded_mlflow_uri
from postgres_server import new_database

ROLES = ("admin", "maintainer", "data-scientist", "viewer")


@dataclass
class World:
    """Everything a governance test needs, built from real objects."""

    access: Access
    approvals: Approvals
    gates: StaticGates
    registry: Registry
    model: str
    callers: dict[str, Caller]
    secrets: dict[str, str]


@pytest.fixture
def lifecycle_store(tmp_path: Path) -> Iterator[SqlStore]:
    """greenbutton's store in a SQLite file (lifecycle, specs, governance on one engine)."""
    store = open_store(f"sqlite:///{tmp_path / 'gov' / 'gb.db'}")
    yield store
    store.close()


def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new SQLite file, or a new database on the test PostgreSQL, for ``request.param``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gov' / 'gb.db'}"
    return new_database(request.getfixturevalue("postgres_uri"), "gov")


@pytest.fixture(params=["sqlite", "postgres"])
def both_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """greenbutton's store on SQLite and on PostgreSQL (modules override ``lifecycle_store``
    with it to run every test on both)."""
    store = open_store(fresh_database(request, tmp_path))
    yield store
    store.close()


@pytest.fixture
def governance_store(lifecycle_store: SqlStore) -> SqlGovernanceStore:
    """The governance side of the same store."""
    return lifecycle_store.governance_store()


@pytest.fixture(scope="session")
def shared_mlflow(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    """One MLflow registry for all governance tests (each test registers its own model)."""
    uri = seeded_mlflow_uri(tmp_path_factory.mktemp("gov-mlflow"))
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def world(lifecycle_store: SqlStore, governance_store: SqlGovernanceStore,
          shared_mlflow: MlflowClient) -> World:
    """A model with three versions and one principal (and token) per role."""
    model = f"model-{uuid.uuid4().hex[:8]}"
    shared_mlflow.create_registered_model(model)
    for _ in range(3):
        shared_mlflow.create_model_version(model, source="file:///nowhere")
    registry = Registry(shared_mlflow, lifecycle_store)
    access = Access(governance_store)
    gates = StaticGates()
    approvals = Approvals(access, registry, gates, deployments=lifecycle_store.deployment_store(),
                          check_spec=lambda change: check_spec_change(
                              change, lifecycle_store.list_states(change.model)))
    admin_token = access.bootstrap_admin()
    assert admin_token is not None
    admin = access.authenticate(admin_token.secret)
    callers, secrets = {"admin": admin}, {"admin": admin_token.secret}
    for role in ROLES[1:]:
        access.create_principal(admin, role, role)
        issued = access.issue_token(admin, role)
        callers[role], secrets[role] = access.authenticate(issued.secret), issued.secret
    return World(access, approvals, gates, registry, model, callers, secrets)


@pytest.fixture
async def api(world: World, tmp_path: Path, shared_mlflow: MlflowClient,
              lifecycle_store: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    """The control plane with governance, over ASGI (no sockets)."""
    uri = shared_mlflow.tracking_uri  # already migrated: a fresh MLflow database costs seconds
    settings = Settings(home=tmp_path / "gb", mlflow={"tracking_uri": uri},  # type: ignore[arg-type]
                        _env_file=None)  # type: ignore[call-arg]
    async with in_process_control_plane(settings, lifecycle_store, world.registry,
                                        gates=world.gates, is_signed_in=False) as found:
        yield found.client
