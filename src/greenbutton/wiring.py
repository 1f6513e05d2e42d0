"""The only module that picks concrete classes: ``build_*(settings)`` for each entry point."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PAYLOAD_DB, Settings

if TYPE_CHECKING:  # each builder imports what it builds: `serve` needs none of the control plane
    from collections.abc import Callable

    from starlette.applications import Starlette

    from .controller.leader import Elector
    from .controller.scrape_targets import ScrapeTargetFile
    from .controller.targets import Target
    from .controlplane.context import ControlPlane
    from .dataplane.hooks import ServingPlugins
    from .gates.runner import SandboxedGateRunner
    from .governance.access import Access
    from .governance.approvals import GateRunner
    from .registry import Registry
    from .store.protocol import LifecycleStore
    from .store.sql import SqlStore

log = logging.getLogger(__name__)


def build_monitoring(settings: Settings) -> ServingPlugins:
    """A serving process's monitoring routes and hooks (none when monitoring is disabled)."""
    from .dataplane.hooks import ServingPlugins

    if not settings.monitoring.is_enabled:
        return ServingPlugins()
    from .monitoring.alerts import AlertsSpec
    from .monitoring.payload_store import PayloadStore
    from .monitoring.runtime import MonitoringRuntime

    alerts_file = settings.monitoring.alerts_file
    runtime = MonitoringRuntime(
        settings.monitoring,
        PayloadStore(settings.monitoring.payload_store_uri),
        AlertsSpec.from_file(alerts_file) if alerts_file else None,
    )
    return ServingPlugins(routes=runtime.routes(), hooks=runtime.hooks)


def prepare_home(settings: Settings) -> None:
    """Create the embedded defaults' folder, private to the user, and make what is already in
    it private too (``log_model`` may have created the MLflow database with the user's
    umask); one process at a time (see store/init_lock.py)."""
    import os
    import stat

    from .store.init_lock import initialising

    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with initialising(settings.home):
        _move_old_payload_store(settings.home)
    for path in (settings.home, *settings.home.iterdir()):
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)
        except FileNotFoundError:  # another process's SQLite journal, gone meanwhile
            continue


def _move_old_payload_store(home: Path) -> None:
    """The payload store's default file moved from ``<home>/monitoring.db`` into a folder of
    its own: an old one (with its WAL files) moves along, once."""
    old, new = home / "monitoring.db", home / PAYLOAD_DB
    if not old.exists() or new.exists():
        return
    new.parent.mkdir(mode=0o700, exist_ok=True)
    for suffix in ("-wal", "-shm", ""):  # the database last: it is what the check looks for
        source = old.with_name(old.name + suffix)
        if source.exists():
            source.rename(new.with_name(new.name + suffix))


def build_store(settings: Settings) -> SqlStore:
    """greenbutton's own store, chosen by ``settings.store.uri``, its audit entries sealed
    with the control plane's key (created on first start: the log is sealed from then on,
    starting with a baseline of the lifecycle as it stands)."""
    from .governance.integrity import sealing_events
    from .store import open_store
    from .store.audit_seal import AuditSeal

    key_file = settings.auth.audit_key_file
    assert key_file is not None
    store = open_store(settings.store.uri)
    if key_file.exists():
        store.close()
        return open_store(settings.store.uri, seal=AuditSeal.open(key_file))
    first = store.governance_store().audit_tail() + 1
    seal = AuditSeal.open(key_file, create_from_seq=first)
    states = store.list_states()
    store.close()
    store = open_store(settings.store.uri, seal=seal)
    store.governance_store().append_audit(sealing_events(states, first))
    return store


def build_registry(settings: Settings, store: LifecycleStore) -> Registry:
    """The lifecycle over the MLflow client named by the settings (MLflow's embedded database
    created and migrated first)."""
    from .registry import Registry
    from .registry.tracking import open_mlflow

    return Registry(open_mlflow(settings.mlflow), store)


def governed_model_uri(settings: Settings, uri: str) -> str:
    """``models:/NAME@production`` as greenbutton's lifecycle has it (``greenbutton serve``):
    an alias set in MLflow behind greenbutton's back serves nothing."""
    if "@" not in uri or not uri.startswith("models:/"):
        return uri
    from .store import open_store

    store = open_store(settings.store.uri)
    try:
        return build_registry(settings, store).governed_uri(uri)
    finally:
        store.close()


def build_gate_runner(settings: Settings) -> SandboxedGateRunner:
    """Gates run on a copy of the version in the sandbox: no network, none of our files."""
    from .gates.runner import SandboxedGateRunner
    from .sandbox.policy import policy_for
    from .sandbox.runner import Sandbox

    return SandboxedGateRunner(settings, Sandbox(policy_for(settings)))


def bootstrap_admin(settings: Settings, access: Access) -> bool:
    """On first start, create the admin; its token goes to ``<home>/admin.token`` (0600),
    for the CLI on this machine, and never to the output or a log. True if it was created."""
    from .governance.tokens import write_token_file

    issued = access.bootstrap_admin()
    if issued is None:
        return False
    write_token_file(settings.home, issued.secret)
    return True


def assemble_control_plane(settings: Settings, store: SqlStore, registry: Registry, *,
                           gates: GateRunner | None = None, target: Target | None = None,
                           elector: Elector | None = None,
                           on_leadership_lost: Callable[[], None] | None = None,
                           resources: tuple[object, ...] = ()) -> ControlPlane:
    """The control plane's parts over ``store`` and ``registry``: tokens and permissions, the
    approval workflow with its gates (in the sandbox unless ``gates`` is given), the
    lifecycle guard, deployment specs, and the controller reconciling what governance
    allows. ``up`` and the in-process tests build it the same way."""
    from .controller.desired import desired_state
    from .controller.leader import AlwaysLeader
    from .controller.loop import Controller
    from .controller.rollouts import audit_rollout
    from .controller.routing.table import RouteTable
    from .controller.specs import check_spec_change
    from .controller.targets import open_target
    from .controlplane.context import ControlPlane
    from .governance.access import Access
    from .governance.approvals import Approvals
    from .governance.integrity import LifecycleGuard

    access = Access(store.governance_store(), token_ttl_days=settings.auth.token_ttl_days)
    specs = store.deployment_store()
    approvals = Approvals(access, registry, gates or build_gate_runner(settings),
                          four_eyes_default=settings.auth.is_four_eyes_default,
                          gate_lease_s=settings.auth.gate_lease_s, deployments=specs,
                          check_spec=lambda change: check_spec_change(
                              change, store.list_states(change.model)))
    guard = LifecycleGuard(access.store, store, registry, seal=access.store.seal,
                           mirror_interval_s=settings.controller.integrity_interval_s)
    target_uri = settings.controller.target_uri
    scrape_targets = _scrape_targets(settings) if target is None else None
    target = target or open_target(target_uri, settings)
    routes = RouteTable()
    replicas = settings.controller.default_replicas
    controller = Controller(lambda: desired_state(guard.governed_states(), specs,
                                                  target_uri=target_uri,
                                                  default_replicas=replicas),
                            target, routes, settings,
                            on_rollout=audit_rollout(access.store.append_audit),
                            scrape_targets=scrape_targets)
    return ControlPlane(settings=settings, registry=registry, controller=controller,
                        routes=routes, target=target, access=access, approvals=approvals,
                        deployments=specs, guard=guard, elector=elector or AlwaysLeader(),
                        on_leadership_lost=on_leadership_lost,
                        is_bootstrapped=bootstrap_admin(settings, access),
                        resources=resources)


def build_control_plane(settings: Settings) -> Starlette:
    """Everything ``greenbutton up`` runs: API, stable endpoint URLs, reconcile loop. On an
    embedded store it claims the home first: a second ``up`` there refuses."""
    from .controller.home_claim import claim_home
    from .controller.leader import open_elector, terminate_this_process
    from .controlplane.app import create_control_plane

    prepare_home(settings)
    elector = open_elector(settings)
    claim = None if elector.is_shared else claim_home(settings.home, settings.server.url)
    store = build_store(settings)
    plane = assemble_control_plane(settings, store, build_registry(settings, store),
                                   elector=elector, on_leadership_lost=terminate_this_process,
                                   resources=(claim,) if claim is not None else ())
    return create_control_plane(plane)


def _scrape_targets(settings: Settings) -> ScrapeTargetFile | None:
    """The Prometheus targets file of a local target's processes (Kubernetes pods are
    found by Prometheus itself: ServiceMonitor or pod discovery, docs/scale-out.md)."""
    from .controller.scrape_targets import ScrapeTargetFile

    if not settings.controller.target_uri.startswith("local:"):
        return None
    return ScrapeTargetFile(settings.scrape_targets_file)
