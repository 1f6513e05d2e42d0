"""MLflow's stores opened for a process: an embedded SQLite database is created and migrated
by one process at a time (:mod:`greenbutton.store.init_lock`), before anything else uses it.

MLflow creates its tables and runs its migrations when a process first opens a database, and
does not guard that against another process doing the same: two processes starting on a new
file fail with ``No such index`` or ``No such constraint``. :func:`open_mlflow` opens both of
MLflow's stores under the lock (``MlflowClient`` opens the tracking store when it is built);
MLflow keeps them for the rest of the process (the fluent API ``mlflow.start_run`` included),
and a process opening them later finds the schema at head. Every greenbutton command that
uses MLflow calls it before anything else does.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from ..config import MlflowSettings
from ..store.init_lock import embedded_folder, initialising


def open_mlflow(settings: MlflowSettings) -> MlflowClient:
    """A client on the tracking and registry stores of ``settings``, each created and
    migrated first when it is an embedded SQLite file (servers are left to themselves)."""
    tracking = embedded_folder(settings.tracking_uri)
    with initialising(tracking):
        client = MlflowClient(settings.tracking_uri, settings.registry_uri)  # opens tracking
        if tracking is not None:
            client.search_experiments(max_results=1)  # in case a later MLflow opens it lazily
    registry = embedded_folder(settings.registry_uri)
    if registry is not None:
        with initialising(registry):
            client.search_registered_models(max_results=1)
    return client


def experiment_id(client: MlflowClient, name: str, artifact_location: str) -> str:
    """The id of the experiment ``name``, created if missing (by whichever process asks
    first: another one creating it meanwhile is not an error)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"experiment {name!r} created and gone"
    return str(experiment.experiment_id)
