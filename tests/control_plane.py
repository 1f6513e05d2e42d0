"""Shared by the suites that drive a whole control plane in-process over ASGI (no processes),
assembled by ``wiring.assemble_control_plane`` as ``greenbutton up`` does."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import httpx
import pandas as pd

import greenbutton
from greenbutton.config import Settings
from greenbutton.controller.targets import Target
from greenbutton.controlplane.app import create_control_plane
from greenbutton.controlplane.context import ControlPlane
from greenbutton.governance.access import Caller
from greenbutton.governance.approvals import GateRunner
from greenbutton.governance.tokens import read_token_file
from greenbutton.registry import Registry
from greenbutton.store.governance_records import GateOutcome
from greenbutton.store.sql import SqlStore
from greenbutton.wiring import assemble_control_plane
from mlflow_template import seed_mlflow_db


class Echo(greenbutton.Model):
    """Answers its input column ``x``."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]


def log_echo_versions(settings: Settings, params: Iterable[dict[str, Any]]) -> None:
    """Register one version of model ``echo`` per item of ``params`` (logged as run params);
    pickled by value, so gates (in the sandbox) and serving processes load it without the
    tests on their path."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    if settings.mlflow.tracking_uri == f"sqlite:///{settings.home / 'mlflow.db'}":
        seed_mlflow_db(settings)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        for run_params in params:
            greenbutton.log_model(Echo(), "echo", reference_data=frame, settings=settings,
                                  params=run_params or None, pip_requirements=["pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@dataclass
class StaticGates:
    """A gate runner answering the verdicts a test sets per (model, version); default: the
    conformance gate passed (the real gates run in the sandbox: tests/gates)."""

    verdicts: dict[tuple[str, int], list[GateOutcome]] = field(default_factory=dict)

    def run(self, model: str, version: int) -> list[GateOutcome]:
        return self.verdicts.get((model, version), [GateOutcome("conformance", True, {})])


@dataclass
class InProcess:
    """A control plane assembled as ``greenbutton up`` assembles it, its app over ASGI."""

    plane: ControlPlane
    client: httpx.AsyncClient
    """Signed in as the admin (bearer header) unless asked otherwise."""
    admin_token: str | None
    """None when the store's admin was bootstrapped before (by the test)."""

    @property
    def admin(self) -> Caller:
        assert self.admin_token is not None
        return self.plane.access.authenticate(self.admin_token)


@asynccontextmanager
async def in_process_control_plane(
    settings: Settings, store: SqlStore, registry: Registry, *,
    gates: GateRunner | None = None, target: Target | None = None, is_signed_in: bool = True,
) -> AsyncIterator[InProcess]:
    """The control plane of ``wiring.assemble_control_plane`` (governance included; gates from
    ``gates``, default all passing), its reconcile loop not started, and an HTTP client on its
    ASGI app (API + gateway + dashboard) holding the admin's token (``is_signed_in``)."""
    plane = assemble_control_plane(settings, store, registry, gates=gates or StaticGates(),
                                   target=target)
    admin_token = read_token_file(settings.home)
    assert admin_token is not None or not is_signed_in, "the admin was bootstrapped elsewhere"
    app = create_control_plane(plane)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8600",
                                     headers={"authorization": f"Bearer {admin_token}"}
                                     if is_signed_in and admin_token else None) as client:
            yield InProcess(plane, client, admin_token)
    finally:
        await plane.target.close()


@asynccontextmanager
async def control_plane_client(
    settings: Settings, store: SqlStore, registry: Registry, *,
    gates: GateRunner | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client, signed in as the admin, on ``in_process_control_plane``."""
    async with in_process_control_plane(settings, store, registry, gates=gates) as found:
        yield found.client
