"""``ControlPlane``: every object the control plane's handlers use, built once by ``wiring``.

Usage::

    plane = wiring.assemble_control_plane(settings, store, registry)   # the one place
    app = create_control_plane(plane)
    ...
    async def handler(request: Request) -> Response:
        plane = of(request)                      # typed; no app.state attribute guessing
        versions = await off_loop(plane.registry.list_versions, name)

Governance is part of every control plane: there is no app without ``access`` and
``approvals``. ``off_loop`` is how a handler calls MLflow or a database: in a worker thread,
so a slow registry never stalls the event loop that also proxies ``/endpoints/*`` traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..config import Settings
from ..controller.leader import AlwaysLeader, Elector, Leadership
from ..controller.loop import Controller
from ..controller.routing.table import RouteTable
from ..controller.targets import Target
from ..governance.access import Access
from ..governance.approvals import Approvals
from ..governance.integrity import LifecycleGuard
from ..registry import Registry
from ..store.protocol import DeploymentStore

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class ControlPlane:
    """The control plane's parts (see the module docstring)."""

    settings: Settings
    registry: Registry
    controller: Controller
    routes: RouteTable
    target: Target
    access: Access
    approvals: Approvals
    deployments: DeploymentStore
    guard: LifecycleGuard
    elector: Elector = field(default_factory=AlwaysLeader)
    on_leadership_lost: Callable[[], None] | None = None
    leadership: Leadership = field(default_factory=Leadership)
    is_bootstrapped: bool = False
    """The admin was created by this start (the CLI says where its token is, once)."""
    resources: tuple[object, ...] = ()
    """Held for the life of the process (the home claim of ``up``)."""


def of(request: Request) -> ControlPlane:
    """The control plane serving ``request``."""
    return of_app(request.app)


def of_app(app: Starlette) -> ControlPlane:
    """The control plane ``app`` was created over (``create_control_plane``)."""
    plane: ControlPlane = app.state.control_plane
    return plane


async def off_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` in a worker thread (MLflow and database calls)."""
    return await run_in_threadpool(function, *args, **kwargs)
