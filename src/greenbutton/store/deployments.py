"""``deployment_store_for``: the deployment-spec store that goes with a lifecycle store."""

from __future__ import annotations

from .deployment_memory import MemoryDeploymentStore
from .protocol import DeploymentStore, LifecycleStore


def deployment_store_for(store: LifecycleStore) -> DeploymentStore:
    """The same database's specs when ``store`` offers them (``deployment_store()``), else
    specs in memory (``memory://``)."""
    build = getattr(store, "deployment_store", None)
    if callable(build):
        built: DeploymentStore = build()
        return built
    return MemoryDeploymentStore()
