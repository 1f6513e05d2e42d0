"""A control plane over ASGI with two logged versions of a tiny model, for the pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest

import greenbutton
from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.routes import RouteTable
from greenbutton.controller.targets import open_target
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import Approvals
from greenbutton.server.app import create_control_plane
from greenbutton.server.dashboard.session import COOKIE
from greenbutton.store.governance_records import GateOutcome
from greenbutton.store.governance_sql import SqlGovernanceStore
from greenbutton.wiring import build_registry, build_store, desired_deployments


class Echo(greenbutton.Model):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("gb"), _env_file=None)  # type: ignore[call-arg]
    previous = mlflow.get_tracking_uri()
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    for alpha in (0.1, 0.5):
        greenbutton.log_model(Echo(), "echo", reference_data=frame, settings=settings,
                              params={"alpha": alpha}, pip_requirements=["pandas"])
    yield settings
    mlflow.set_tracking_uri(previous)


@pytest.fixture
async def web(home: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the whole control plane (API + dashboard), nothing started."""
    store = build_store(home)
    registry = build_registry(home, store)
    target = open_target("local://", home)
    routes = RouteTable()
    controller = Controller(lambda: desired_deployments(store), target, routes, home)
    app = create_control_plane(home, registry, controller, routes, target)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8600") as client:
        yield client
    await target.close()
    store.close()


class NoGates:
    """A gate runner with no gates (the gates themselves are tested in tests/gates)."""

    def run(self, model: str, version: int) -> list[GateOutcome]:
        return []


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
    access = Access(SqlGovernanceStore(settings.store.uri))
    approvals = Approvals(access, registry, NoGates())
    issued = access.bootstrap_admin()
    assert issued is not None
    admin = access.authenticate(issued.secret)
    tokens = {"admin": issued.secret}
    for role in ("maintainer", "viewer"):
        access.create_principal(admin, role, role)
        tokens[role] = access.issue_token(admin, role).secret
    target = open_target("local://", settings)
    routes = RouteTable()
    controller = Controller(lambda: desired_deployments(store), target, routes, settings)
    app = create_control_plane(settings, registry, controller, routes, target,
                               access=access, approvals=approvals)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8600") as client:
        yield Governed(client, tokens)
    await target.close()
    access.store.close()
    store.close()
