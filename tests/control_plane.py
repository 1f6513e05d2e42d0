"""Shared by the suites that drive a whole control plane in-process over ASGI (no processes)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import cloudpickle
import httpx
import pandas as pd

import greenbutton
from greenbutton.config import Settings
from greenbutton.controller.desired import desired_state
from greenbutton.controller.loop import Controller
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.targets import open_target
from greenbutton.controlplane.app import create_control_plane
from greenbutton.governance.access import Access
from greenbutton.governance.approvals import Approvals
from greenbutton.registry import Registry
from greenbutton.store.deployments import deployment_store_for
from greenbutton.store.protocol import LifecycleStore


class Echo(greenbutton.Model):
    """Answers its input column ``x``."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"]


def log_echo_versions(settings: Settings, params: Iterable[dict[str, Any]]) -> None:
    """Register one version of model ``echo`` per item of ``params`` (logged as run params);
    pickled by value, so gates (in the sandbox) and serving processes load it without the
    tests on their path."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        for run_params in params:
            greenbutton.log_model(Echo(), "echo", reference_data=frame, settings=settings,
                                  params=run_params or None, pip_requirements=["pandas"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@asynccontextmanager
async def control_plane_client(
    settings: Settings, store: LifecycleStore, registry: Registry, *,
    access: Access | None = None, approvals: Approvals | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the control plane's ASGI app (API + gateway + dashboard); its
    reconcile loop is not started. Governance is off unless ``access``/``approvals`` are given."""
    specs = deployment_store_for(store)
    target = open_target("local://", settings)
    routes = RouteTable()
    controller = Controller(lambda: desired_state(store.list_states(), specs), target, routes,
                            settings)
    app = create_control_plane(settings, registry, controller, routes, target,
                               access=access, approvals=approvals)
    app.state.deployment_store = specs
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://127.0.0.1:8600") as client:
            yield client
    finally:
        await target.close()
