"""A control plane over ASGI with two logged versions of a tiny model, for the pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest

from control_plane import control_plane_client, log_echo_versions
from greenbutton.config import Settings
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import Approvals
from greenbutton.server.dashboard.session import COOKIE
from greenbutton.store.governance_records import GateOutcome
from greenbutton.store.governance_sql import open_governance_store
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
