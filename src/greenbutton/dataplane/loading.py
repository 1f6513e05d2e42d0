"""Load the pyfunc model a serving process answers for, and the name and version it answers as."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.pyfunc import (
    FLAVOR_NAME,
    PY_VERSION,
    PyFuncModel,
    _get_pip_requirements_from_model_path,
    _warn_potentially_incompatible_py_version_if_necessary,
)
from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

from ..calls import ModelCalls
from ..config import MlflowSettings
from ..errors import InvalidInput, ModelNotFound
from ..registry.tracking import open_mlflow
from .fastparse import ScoringParser
from .fastpath import FastConformer, TensorConformer
from .nulls import NullCheck

UNREGISTERED_NAME = "model"
"""Name a model answers as when its URI is not a ``models:/`` registry URI."""


@dataclass(frozen=True)
class ServedModel:
    """A loaded pyfunc model and the registry identity it answers as."""

    pyfunc: PyFuncModel
    name: str
    version: str | None
    conformer: FastConformer | None = field(init=False, repr=False)
    """Fast path past MLflow's schema enforcement for plainly valid DataFrames (or None)."""
    tensor: TensorConformer | None = field(init=False, repr=False)
    """Fast path past MLflow's enforcement for arrays already of the tensor spec (or None)."""
    parser: ScoringParser | None = field(init=False, repr=False)
    """Builds MLflow scoring payloads into model input in vectorised steps (or None)."""
    nulls: NullCheck | None = field(init=False, repr=False)
    """Refuses nulls the signature does not allow (None without a signature)."""
    calls: ModelCalls = field(init=False, repr=False, compare=False,
                              default_factory=ModelCalls)
    """The :meth:`predict` calls running now (watched by :mod:`.watchdog`)."""

    def __post_init__(self) -> None:
        metadata = self.pyfunc.metadata
        is_plain = not (
            metadata._is_signature_from_type_hint()  # type: ignore[no-untyped-call]
            or metadata._is_type_hint_from_example()  # type: ignore[no-untyped-call]
            or not hasattr(self.pyfunc, "_predict_fn")
        )
        schema = metadata.get_input_schema()  # type: ignore[no-untyped-call]
        fast = {
            "conformer": FastConformer.from_schema(schema),
            "tensor": TensorConformer.from_schema(schema),
            "parser": ScoringParser.from_schema(schema),
            "nulls": NullCheck.from_schema(schema),  # type-hinted models check their own input
        }
        for name, value in fast.items():
            object.__setattr__(self, name, value if is_plain else None)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The model's predictions; plainly valid DataFrames skip MLflow's slower enforcement."""
        token = self.calls.begin()
        try:
            if params is None:
                conformed = self._conformed(data)
                if conformed is not None:
                    return self.pyfunc._predict_fn(conformed)  # what PyFuncModel.predict calls
            return self.pyfunc.predict(data, params=params)
        finally:
            self.calls.end(token)

    def _conformed(self, data: Any) -> Any:
        if self.conformer is not None and isinstance(data, pd.DataFrame):
            return self.conformer.conform(data)
        if self.tensor is not None:
            return self.tensor.conform(data)
        return None

    @property
    def input_example(self) -> Any:
        """The example saved with the model (a DataFrame for column signatures), or None."""
        return getattr(self.pyfunc, "input_example", None)

    @property
    def python_model(self) -> object:
        """The user's ``PythonModel`` instance, or None for other flavors (e.g. sklearn)."""
        try:
            return self.pyfunc.unwrap_python_model()  # type: ignore[no-untyped-call]
        except (MlflowException, AttributeError, ValueError):
            return None


@dataclass(frozen=True)
class FetchedModel:
    """A model's files on local disk and the registry identity it answers as."""

    path: str
    name: str
    version: str | None
    is_checked: bool = False
    """The environment was checked against the model's (see :func:`check_environment`)."""


def load_served_model(model_uri: str, settings: MlflowSettings, dst_path: Path) -> ServedModel:
    """Resolve ``model_uri`` (alias → version), download it into ``dst_path`` and load it."""
    return load_fetched(model_uri, fetch_model(model_uri, settings, dst_path))


def fetch_model(model_uri: str, settings: MlflowSettings, dst_path: Path) -> FetchedModel:
    """Resolve ``model_uri`` (alias → version) and download its files into ``dst_path``."""
    client = open_mlflow(settings)
    name, version = resolve_identity(model_uri, client)
    try:
        # MLflow resolves models:/ URIs against its global registry URI, so resolve here with
        # our client; downloading the resolved version also pins it if an alias moves meanwhile
        source = resolve_location(model_uri, client, name, version)
        local_path = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst_path), tracking_uri=settings.tracking_uri
        )
    except MlflowException as error:
        raise ModelNotFound(f"cannot load {model_uri!r}: {error.message}") from error
    return FetchedModel(path=local_path, name=name, version=version)


def copied_model(model_uri: str, folder: Path) -> FetchedModel:
    """A model whose files were copied to ``folder`` beforehand; ``models:/NAME/VERSION``
    says who it answers as (no registry is asked)."""
    if not (folder / MLMODEL_FILE_NAME).is_file():
        raise ModelNotFound(f"cannot load {model_uri!r}: no MLmodel file in {folder}")
    registered = _split_models_uri(model_uri)
    if registered is None or registered[1] or not registered[2].isdigit():
        return FetchedModel(path=str(folder), name=UNREGISTERED_NAME, version=None)
    return FetchedModel(path=str(folder), name=registered[0], version=registered[2])


def check_environment(fetched: FetchedModel) -> FetchedModel:
    """Log what ``mlflow.pyfunc.load_model`` warns about (requirements this environment does
    not meet, another Python version); loading the copy returned skips these checks.

    Listing the installed packages takes about 0.2 s, so the prefetch helper (:mod:`.prefetch`)
    does this while the serving process imports.
    """
    warn_dependency_requirement_mismatches(_get_pip_requirements_from_model_path(fetched.path))
    flavor = Model.load(Path(fetched.path) / MLMODEL_FILE_NAME).flavors.get(FLAVOR_NAME) or {}
    _warn_potentially_incompatible_py_version_if_necessary(flavor.get(PY_VERSION))  # type: ignore[no-untyped-call]
    return replace(fetched, is_checked=True)


def load_fetched(model_uri: str, fetched: FetchedModel) -> ServedModel:
    """Load the pyfunc model whose files :func:`fetch_model` downloaded."""
    try:
        pyfunc = mlflow.pyfunc.load_model(fetched.path, suppress_warnings=fetched.is_checked)
    except MlflowException as error:
        raise ModelNotFound(f"cannot load {model_uri!r}: {error.message}") from error
    return ServedModel(pyfunc=pyfunc, name=fetched.name, version=fetched.version)


def resolve_identity(model_uri: str, client: MlflowClient) -> tuple[str, str | None]:
    """``(name, version)`` for ``models:/name/version|stage`` and ``models:/name@alias``."""
    registered = _split_models_uri(model_uri)
    if registered is None:
        return UNREGISTERED_NAME, None
    name, alias, rest = registered
    try:
        if alias:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if rest.isdigit():
            return name, rest
        latest = client.get_latest_versions(name, stages=[rest])
    except MlflowException as error:
        raise ModelNotFound(f"cannot resolve {model_uri!r}: {error.message}") from error
    if not latest:
        raise ModelNotFound(f"model {name!r} has no version in stage {rest!r}")
    return name, str(latest[0].version)


def resolve_location(model_uri: str, client: MlflowClient, name: str, version: str | None) -> str:
    """Where the model's files are: registry and logged-model URIs become artifact URIs."""
    if version is not None:
        return str(client.get_model_version_download_uri(name, version))
    scheme, _, path = model_uri.partition(":/")
    if scheme == "models":  # models:/m-<id>, a logged model outside the registry
        return str(client.get_logged_model(path.strip("/")).artifact_location)
    return model_uri


def _split_models_uri(model_uri: str) -> tuple[str, str, str] | None:
    # ("name", "alias", "") or ("name", "", "version-or-stage"); None when not registered
    scheme, _, path = model_uri.partition(":/")
    if scheme != "models":
        return None
    head, _, rest = path.strip("/").partition("/")
    name, _, alias = head.partition("@")
    if not name:
        raise InvalidInput(f"model URI {model_uri!r} names no model", field="model_uri")
    if not alias and not rest:
        return None
    return name, alias, rest
