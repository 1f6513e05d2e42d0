"""``greenbutton.log_model``: a greenbutton.Model → an MLflow run and a registered model version.

What is logged with the model: a signature inferred from the reference data and the model's
own predictions on it, an input example, the reference sample and its profile (artifacts the
monitors are fitted from), the reference data as an MLflow dataset input, the git commit and
a digest of the data (run and version tags).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import mlflow.data
import mlflow.data.pandas_dataset
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.models import infer_signature

from . import model as model_module
from . import reference
from .config import Settings
from .conformance import call_predict, check
from .errors import InvalidInput, NonConformingModel
from .gates import spec as gate_spec
from .gates.checks import model_tests
from .model import Model
from .registry.console import quiet_mlflow
from .registry.tracking import experiment_id, open_mlflow

REFERENCE_ARTIFACT = "greenbutton_reference"
"""Artifact key of the reference sample (Parquet) inside the logged model."""
PROFILE_ARTIFACT = "greenbutton_profile"
"""Artifact key of the reference profile (JSON) inside the logged model."""
TAG_DIGEST = "greenbutton.data_digest"
TAG_COMMIT = "greenbutton.git_commit"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedModel:
    """Where a logged model landed."""

    name: str
    version: int
    run_id: str
    model_uri: str
    data_digest: str
    git_commit: str | None


def log_model(
    model: Model,
    name: str,
    *,
    reference_data: Any,
    reference_targets: Any = None,
    artifacts: dict[str, str] | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    code_paths: list[str] | None = None,
    description: str | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
    held_out: tuple[Any, Any] | None = None,
    gates: list[Any] | None = None,
    categorical: list[str] | None = None,
    verbose: bool = False,
) -> LoggedModel:
    """Log ``model`` to MLflow with its reference data and register a new version of ``name``.

    Logs into the active MLflow run if there is one, else into a new run of the experiment
    ``settings.mlflow.experiment``; ``params`` and ``metrics`` are logged to that run.
    ``held_out=(X, y)`` and ``gates=[{"kind": "metric", "metric": "accuracy", "min": 0.9}]``
    are what promotion gates check (see docs/governance.md); held-out rows are also what
    label, performance and output drift are measured against, and, when the model has a
    ``predict_proba(context, model_input)`` method, what calibrates its accuracy estimate
    without labels. ``reference_targets``: the true targets of the reference rows (e.g.
    ``y_train``), one per row; label drift is measured against them and the held-out
    truths together. ``categorical``: reference columns to monitor as categories besides
    those inferred (strings, booleans, numeric codes with few values).

    Quiet by default: MLflow's progress bars, event lines and known notices are off during the
    call (see :mod:`greenbutton.registry.console`); its other warnings and the model's own are
    shown, and each step is one INFO line of the ``greenbutton.packaging`` logger.
    ``verbose=True`` leaves MLflow's output as MLflow prints it.
    """
    if not MODEL_NAME.match(name):
        raise InvalidInput(f"model name {name!r} must match {MODEL_NAME.pattern}", field="name")
    report = check(model)
    if not report:
        raise NonConformingModel([str(p) for p in report.problems])
    frame, targets = _reference_rows(reference_data, reference_targets)
    settings = settings or Settings()
    with (nullcontext() if verbose else quiet_mlflow(),
          tempfile.TemporaryDirectory(prefix="greenbutton-") as tmp):
        client = _point_mlflow_at(settings)
        all_artifacts = _write_reference(frame, Path(tmp), artifacts or {})
        gate_artifacts, gate_tag = gate_spec.prepare(held_out, gates, Path(tmp))
        all_artifacts.update(gate_artifacts)
        logger.info("checking %s on %d reference rows", name, len(frame))
        predictions, held = _predict_reference(model, frame, all_artifacts, held_out)
        signature = infer_signature(frame, predictions)
        logger.info("fitting the monitors of %s", name)
        all_artifacts.update(_fit_monitors(frame, predictions, Path(tmp), settings, held,
                                           targets, categorical))
        logger.info("logging %s to MLflow (%s)", name, settings.mlflow.tracking_uri)
        with _run(client, settings, name) as run_id:
            dataset = mlflow.data.pandas_dataset.from_pandas(frame, name=f"{name}-reference")
            mlflow.log_input(dataset, context="reference")
            commit = _git_commit()
            run_tags = {TAG_DIGEST: reference.digest(frame), **(tags or {})}
            if commit:
                run_tags[TAG_COMMIT] = commit
            mlflow.set_tags(run_tags)
            if params:
                mlflow.log_params(params)
            if metrics:
                mlflow.log_metrics(metrics)
            with _model_module_by_value():
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=model,
                    artifacts=all_artifacts,
                    signature=signature,
                    input_example=frame.head(5),
                    registered_model_name=name,
                    pip_requirements=pip_requirements,
                    extra_pip_requirements=extra_pip_requirements,
                    code_paths=code_paths,
                )
    version = int(info.registered_model_version)
    _tag_version(client, name, version, run_tags, description)
    if gate_tag is not None:
        client.set_model_version_tag(name, str(version), gate_spec.GATES_TAG, gate_tag)
    conformance = {"rows": len(frame), "model_tests": model_tests(model)}
    client.set_model_version_tag(name, str(version), gate_spec.CONFORMANCE_TAG,
                                 json.dumps(conformance, separators=(",", ":")))
    logger.info("registered %s version %d (run %s)", name, version, run_id)
    return LoggedModel(name, version, run_id, f"models:/{name}/{version}",
                       run_tags[TAG_DIGEST], commit)


def _reference_rows(data: Any, targets: Any) -> tuple[Any, Any]:
    """The reference sample kept with the model, and its rows' targets (or None)."""
    frame = reference.as_frame(data)
    positions = reference.sample_positions(len(frame))
    if targets is not None:
        try:
            targets = reference.as_targets(targets, len(frame))[positions]
        except ValueError as error:
            raise InvalidInput(str(error), field="reference_targets") from None
    return reference.sample(frame), targets


def _point_mlflow_at(settings: Settings) -> MlflowClient:
    """A client on the settings' MLflow stores, opened (created and migrated) before any other
    MLflow call of this process; the fluent API is pointed there too, unless a run is active."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    client = open_mlflow(settings.mlflow)
    if mlflow.active_run() is None:
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        mlflow.set_registry_uri(settings.mlflow.registry_uri)
    return client


def _write_reference(frame: Any, folder: Path, user: dict[str, str]) -> dict[str, str]:
    clash = {REFERENCE_ARTIFACT, PROFILE_ARTIFACT, "greenbutton_monitors"} & set(user)
    if clash:
        raise InvalidInput(f"artifact names {sorted(clash)} are reserved", field="artifacts")
    data_path = folder / "reference.parquet"
    frame.to_parquet(data_path, index=False)
    profile_path = folder / "profile.json"
    profile_path.write_text(json.dumps(reference.profile(frame), indent=1))
    return {**user, REFERENCE_ARTIFACT: str(data_path), PROFILE_ARTIFACT: str(profile_path)}


def _predict_reference(model: Model, frame: Any, artifacts: dict[str, str],
                       held_out: tuple[Any, Any] | None) -> tuple[Any, HeldOutputs | None]:
    """The model's own predictions on the reference rows (for the signature and monitors),
    after checking it on the first rows, and its outputs on the held-out rows; computed on a
    copy, loaded as MLflow will load it."""
    probe = copy.deepcopy(model)  # load_context may load state that must not be pickled twice
    context = mlflow.pyfunc.PythonModelContext(artifacts=artifacts, model_config={})
    probe.load_context(context)  # type: ignore[no-untyped-call]
    report = check(probe, sample=frame.head(100), context=context)
    if not report:
        raise NonConformingModel([str(p) for p in report.problems])
    predictions = call_predict(probe, context, frame)
    if held_out is None:
        return predictions, None
    rows = reference.as_frame(held_out[0], what="held_out")
    return predictions, HeldOutputs(held_out[1], call_predict(probe, context, rows),
                                    _probabilities(probe, context, rows))


@dataclass(frozen=True)
class HeldOutputs:
    """The held-out rows' truths, and the model's outputs on them."""

    truths: Any
    predictions: Any
    probabilities: Any | None


def _probabilities(model: Model, context: Any, rows: Any) -> Any | None:
    """The model's class probabilities (its optional ``predict_proba``), or None."""
    method = getattr(model, "predict_proba", None)
    if not callable(method):
        return None
    try:
        return method(context, rows)
    except Exception:  # the user's code: the monitors go without the estimate, not the model
        logger.warning("predict_proba failed on the held-out rows; accuracy will not be "
                       "estimated without labels", exc_info=True)
        return None


def _fit_monitors(frame: Any, predictions: Any, folder: Path, settings: Settings,
                  held: HeldOutputs | None, targets: Any, categorical: list[str] | None
                  ) -> dict[str, str]:
    """Drift, outlier and adversarial monitors fitted on the reference data (see monitoring/)."""
    import numpy as np

    from .monitoring.monitors import HeldOut, fit_monitors  # heavy, and only needed here

    held_out = None if held is None else HeldOut(
        np.asarray(held.truths), np.asarray(held.predictions),
        None if held.probabilities is None else np.asarray(held.probabilities))
    return fit_monitors(frame, predictions, folder, held_out=held_out,
                        reference_truths=targets, categorical=categorical,
                        outlier_kind=settings.monitoring.outlier_detector,
                        target_fpr=settings.monitoring.outlier_target_fpr)


@contextmanager
def _run(client: MlflowClient, settings: Settings, name: str) -> Iterator[str]:
    active = mlflow.active_run()
    if active is not None:
        yield active.info.run_id
        return
    where = settings.mlflow
    experiment = experiment_id(client, where.experiment,
                               artifact_location=f"{where.artifact_root}/{where.experiment}")
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        yield run.info.run_id


@contextmanager
def _model_module_by_value() -> Iterator[None]:
    """Pickle greenbutton.Model into the artifact so plain MLflow can load it without us."""
    cloudpickle.register_pickle_by_value(model_module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(model_module)


def _tag_version(client: MlflowClient, name: str, version: int, tags: dict[str, str],
                 description: str | None) -> None:
    for key in (TAG_DIGEST, TAG_COMMIT):
        if key in tags:
            client.set_model_version_tag(name, str(version), key, tags[key])
    if description:
        client.update_model_version(name, str(version), description=description)


def _git_commit() -> str | None:
    """The commit checked out in the current directory, if it is a git work tree."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None
