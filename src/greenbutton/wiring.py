"""The only module that picks concrete classes: ``build_*(settings)`` for each entry point."""

from __future__ import annotations

import logging

from mlflow import MlflowClient
from pydantic import ValidationError
from starlette.applications import Starlette

from .config import Settings
from .controller.loop import Controller
from .controller.reconcile import DeploymentSpec
from .controller.routes import RouteTable
from .controller.targets import open_target
from .registry import Registry
from .server.app import create_control_plane
from .store import open_store
from .store.protocol import LifecycleStore, Stage

log = logging.getLogger(__name__)


def prepare_home(settings: Settings) -> None:
    """Create the embedded defaults' folder, private to the user."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)


def build_store(settings: Settings) -> LifecycleStore:
    """greenbutton's own store, chosen by ``settings.store.uri``."""
    return open_store(settings.store.uri)


def build_registry(settings: Settings, store: LifecycleStore) -> Registry:
    """The lifecycle over the MLflow client named by the settings."""
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.registry_uri)
    return Registry(client, store)


def desired_deployments(store: LifecycleStore) -> list[DeploymentSpec]:
    """One deployment per model with a Production version, named after the model.

    A model whose name cannot be a deployment name (URL, file name, argv) is skipped and
    logged, so one bad name never stops the others from being reconciled.
    """
    specs = []
    for state in store.versions_in(Stage.PRODUCTION):
        try:
            specs.append(DeploymentSpec(name=state.model, model=state.model,
                                        version=state.version))
        except ValidationError:
            log.warning("model %r cannot be deployed: its name is not a valid deployment name",
                        state.model)
    return specs


def build_control_plane(settings: Settings) -> Starlette:
    """Everything ``greenbutton up`` runs: API, stable endpoint URLs, reconcile loop."""
    prepare_home(settings)
    store = build_store(settings)
    registry = build_registry(settings, store)
    routes = RouteTable()
    target = open_target(settings.controller.target_uri, settings)
    controller = Controller(lambda: desired_deployments(store), target, routes, settings)
    return create_control_plane(settings, registry, controller, routes, target)
