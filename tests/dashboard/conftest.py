"""A control plane over ASGI with two logged versions of a tiny model, for the pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import mlflow
import pytest

from control_plane import control_plane_client, in_process_control_plane, log_echo_versions
from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import InstanceState, ObservedDeployment, VersionRef
from greenbutton.controlplane.dashboard.session import COOKIE
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import SpecChange
from greenbutton.registry import Registry, Stage
from greenbutton.store.governance_records import GateOutcome
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


def _team(access: Access, admin_token: str, roles: tuple[str, ...]) -> dict[str, str]:
    """A token for the admin and for one principal per role (named after it)."""
    admin = access.authenticate(admin_token)
    tokens = {"admin": admin_token}
    for role in roles:
        access.create_principal(admin, role, role)
        tokens[role] = access.issue_token(admin, role).secret
    return tokens


@pytest.fixture
async def governed(tmp_path: Path, home: Settings) -> AsyncIterator[Governed]:
    """The control plane of ``home`` in a fresh store of its own; the client is signed in as
    nobody (each test sends a cookie or nothing)."""
    settings = Settings(home=tmp_path / "gb", store={"uri": f"sqlite:///{tmp_path / 'gb.db'}"},  # type: ignore[arg-type]
                        mlflow=home.mlflow, _env_file=None)
    store = build_store(settings)
    registry = build_registry(settings, store)
    async with in_process_control_plane(settings, store, registry, gates=FixedGates(),
                                        is_signed_in=False) as found:
        yield Governed(found.client, _team(found.plane.access, found.admin_token,
                                           ("maintainer", "viewer")))
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
    settings = Settings(home=tmp_path / "gb", store={"uri": f"sqlite:///{tmp_path / 'gb.db'}"},  # type: ignore[arg-type]
                        monitoring={"payload_store_uri": f"sqlite:///{tmp_path / 'mon.db'}"},
                        mlflow=home.mlflow, _env_file=None)
    store = build_store(settings)
    registry = build_registry(settings, store)
    gates = FixedGates()
    async with in_process_control_plane(settings, store, registry, gates=gates,
                                        target=ReadyTarget(), is_signed_in=False) as found:
        plane = found.plane
        admin = found.admin
        plane.approvals.promote(admin, "echo", 1, Stage.PRODUCTION, "first")
        plane.approvals.promote(admin, "echo", 2, Stage.STAGING, "challenger")
        gates.verdicts.update({  # what the pages show: v1's gate failed on a later run
            1: [GateOutcome("metric", False, {"reason": "accuracy 0.4 < 0.8"})],
            2: [GateOutcome("metric", True, {"value": 0.9})]})
        plane.approvals.change_deployment(admin, SpecChange(
            "echo", "echo", {"model": "echo", "routes": [{"to": "production", "weight": 80},
                                                         {"to": "challenger", "weight": 20}]},
            None), None)
        tokens = _team(plane.access, found.admin_token, ("maintainer", "viewer",
                                                         "data-scientist"))
        deployed = Deployed(found.client, tokens, plane.controller, plane.deployments,
                            plane.access, registry)
        await deployed.reconcile()
        yield deployed
    store.close()
