"""A control plane over ASGI with two logged versions of a tiny model, for the pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mlflow
import pytest

from control_plane import control_plane_client, log_echo_versions
from greenbutton.config import Settings
from greenbutton.controller.desired import desired_state
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import InstanceState, ObservedDeployment, VersionRef
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.specs import check_spec_change
from greenbutton.controlplane.app import create_control_plane
from greenbutton.controlplane.dashboard.session import COOKIE
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import Approvals
from greenbutton.registry import Registry, Stage
from greenbutton.store.deployments import deployment_store_for
from greenbutton.store.governance_records import GateOutcome
from greenbutton.store.governance_sql import open_governance_store
from greenbutton.store.protocol import DeploymentStore
from greenbutton.wiring import build_registry, build_store


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    log_echo_versions(settings, [{"alpha": 0.1}, {"alpha": 0.5}])
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture
async def web(home: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the whole control plane (API + dashboard), nothing started."""
    store = build_store(home)
    async with control_plane_client(home, store, build_registry(home, store)) as client:
        yield client
    store.close()


class NoGates:
    """A gate runner with no gates (the gates themselves are tested in tests/gates)."""

    def run(self, model: str, version: int) -> list[GateOutcome]:
        return []


@dataclass
class FixedGates:
    """A gate runner answering given verdicts per version (the real gates: tests/gates)."""

    verdicts: dict[int, list[GateOutcome]] = field(default_factory=dict)

    def run(self, model: str, version: int) -> list[GateOutcome]:
        return self.verdicts.get(version, [])


class ReadyTarget:
    """A Target whose instances are ready as soon as they start (nothing is run)."""

    def __init__(self) -> None:
        self.instances: dict[VersionRef, ObservedDeployment] = {}

    async def observe(self) -> list[ObservedDeployment]:
        return list(self.instances.values())

    async def start(self, ref: VersionRef) -> None:
        url = f"http://127.0.0.1:9/{ref.name}-v{ref.version}"  # discard port: scrapes fail fast
        self.instances[ref] = ObservedDeployment(ref, InstanceState.READY, url)

    async def stop(self, ref: VersionRef, drain_timeout_s: float) -> None:
        self.instances.pop(ref, None)

    async def close(self) -> None:
        self.instances.clear()


@dataclass
class Governed:
    """A client on a control plane with governance, and tokens of three roles."""

    web: httpx.AsyncClient
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        """The sign-in cookie of ``who`` (admin, maintainer or viewer)."""
        return {"cookie": f"{COOKIE}={self.tokens[who]}"}


@pytest.fixture
async def governed(tmp_path: Path, home: Settings) -> AsyncIterator[Governed]:
    """The control plane of ``home`` with governance in a fresh store of its own."""
    settings = Settings(home=home.home, store={"uri": f"sqlite:///{tmp_path / 'gb.db'}"},  # type: ignore[arg-type]
                        _env_file=None)
    store = build_store(settings)
    registry = build_registry(settings, store)
    access = Access(open_governance_store(settings.store.uri))
    approvals = Approvals(access, registry, NoGates())
    issued = access.bootstrap_admin()
    assert issued is not None
    admin = access.authenticate(issued.secret)
    tokens = {"admin": issued.secret}
    for role in ("maintainer", "viewer"):
        access.create_principal(admin, role, role)
        tokens[role] = access.issue_token(admin, role).secret
    async with control_plane_client(settings, store, registry, access=access,
                                    approvals=approvals) as client:
        yield Governed(client, tokens)
    access.store.close()
    store.close()


@dataclass
class Deployed:
    """A governed control plane whose controller serves echo v1 (Production) 80 % and v2
    (Staging, the challenger) 20 % through a spec; nothing actually runs."""

    web: httpx.AsyncClient
    tokens: dict[str, str]
    controller: Controller
    specs: DeploymentStore
    access: Access
    registry: Registry

    def as_(self, who: str) -> dict[str, str]:
        """The sign-in cookie of ``who`` (admin, maintainer or viewer)."""
        return {"cookie": f"{COOKIE}={self.tokens[who]}"}

    async def reconcile(self) -> None:
        """Two passes: start what is wanted, then route it (the target is ready at once)."""
        await self.controller.reconcile_once()
        await self.controller.reconcile_once()


@pytest.fixture
async def deployed(tmp_path: Path, home: Settings) -> AsyncIterator[Deployed]:
    settings = Settings(home=home.home, store={"uri": f"sqlite:///{tmp_path / 'gb.db'}"},  # type: ignore[arg-type]
                        monitoring={"payload_store_uri": f"sqlite:///{tmp_path / 'mon.db'}"},
                        _env_file=None)
    store = build_store(settings)
    registry = build_registry(settings, store)
    access = Access(store.governance_store())
    gates = FixedGates({1: [GateOutcome("metric", False, {"reason": "accuracy 0.4 < 0.8"})],
                        2: [GateOutcome("metric", True, {"value": 0.9})]})
    approvals = Approvals(access, registry, gates, deployments=store.deployment_store(),
                          check_spec=lambda change: check_spec_change(
                              change, store.list_states(change.model)))
    issued = access.bootstrap_admin()
    assert issued is not None
    admin = access.authenticate(issued.secret)
    tokens = {"admin": issued.secret}
    for role in ("maintainer", "viewer", "data-scientist"):
        access.create_principal(admin, role, role)
        tokens[role] = access.issue_token(admin, role).secret
    registry.transition("echo", 1, Stage.PRODUCTION, actor="admin")
    registry.transition("echo", 2, Stage.STAGING, actor="admin")
    specs = deployment_store_for(store)
    specs.put_spec("echo", {"model": "echo", "routes": [{"to": "production", "weight": 80},
                                                        {"to": "challenger", "weight": 20}]},
                   actor="admin")
    target, routes = ReadyTarget(), RouteTable()
    controller = Controller(lambda: desired_state(store.list_states(), specs), target, routes,
                            settings)
    app = create_control_plane(settings, registry, controller, routes, target,
                               access=access, approvals=approvals)
    app.state.deployment_store = specs
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8600") as web:
        found = Deployed(web, tokens, controller, specs, access, registry)
        await found.reconcile()
        yield found
    await target.close()
    access.store.close()
    store.close()
