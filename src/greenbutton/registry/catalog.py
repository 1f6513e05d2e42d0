"""Reading registered models and versions through the MLflow client, errors translated.

``MlflowException`` never leaves this package: it is mapped by its ``error_code``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from ..errors import (
    AlreadyExists,
    GreenbuttonError,
    InvalidInput,
    ModelNotFound,
    NotReady,
    PermissionDenied,
    Unauthenticated,
    VersionNotFound,
)

_PAGE_SIZE = 1000
_BY_CODE: dict[str, Callable[[str], GreenbuttonError]] = {
    "RESOURCE_ALREADY_EXISTS": AlreadyExists,
    "INVALID_PARAMETER_VALUE": InvalidInput,
    "BAD_REQUEST": InvalidInput,
    "PERMISSION_DENIED": PermissionDenied,
    "UNAUTHENTICATED": Unauthenticated,
    "TEMPORARILY_UNAVAILABLE": NotReady,
    "REQUEST_LIMIT_EXCEEDED": NotReady,
    # what the REST client raises when the tracking server cannot be reached
    "INTERNAL_ERROR": NotReady,
}


@contextmanager
def translate_mlflow_errors(not_found: Callable[[], GreenbuttonError]) -> Iterator[None]:
    """Turn ``MlflowException`` into greenbutton errors; ``not_found`` builds the 404 one."""
    try:
        yield
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise not_found() from error
        build = _BY_CODE.get(error.error_code, GreenbuttonError)
        raise build(f"MLflow: {error.message}") from error


def model_not_found(name: str) -> Callable[[], GreenbuttonError]:
    """Factory of the error for a missing registered model."""
    return lambda: ModelNotFound(f"no registered model named {name!r}", field="name")


def version_not_found(name: str, version: int) -> Callable[[], GreenbuttonError]:
    """Factory of the error for a missing model version."""
    return lambda: VersionNotFound(f"model {name!r} has no version {version}", field="version")


def registered_models(client: MlflowClient) -> Iterator[RegisteredModel]:
    """Every registered model, page by page."""
    token: str | None = None
    while True:
        with translate_mlflow_errors(lambda: ModelNotFound("registered models vanished")):
            page = client.search_registered_models(max_results=_PAGE_SIZE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    """One registered model; ``ModelNotFound`` when absent."""
    with translate_mlflow_errors(model_not_found(name)):
        return client.get_registered_model(name)


def model_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    """One model version; ``ModelNotFound`` or ``VersionNotFound`` when absent."""
    try:
        with translate_mlflow_errors(version_not_found(name, version)):
            return client.get_model_version(name, str(version))
    except VersionNotFound:
        registered_model(client, name)  # raises ModelNotFound if the model is the missing part
        raise


def model_versions(client: MlflowClient, name: str,
                   model: RegisteredModel | None = None) -> list[ModelVersion]:
    """Every version of a registered model, by version number; ``ModelNotFound`` when absent
    (``model``: the model as just read, not read again)."""
    model = model or registered_model(client, name)
    name_filter = _name_filter(name)
    if name_filter is None:
        versions = _versions_one_by_one(client, model)
    else:
        versions = [v for v in _search_versions(client, name, name_filter) if v.name == name]
    return sorted(versions, key=lambda v: int(v.version))


def latest_version(model: RegisteredModel) -> int | None:
    """The highest version number of ``model`` (from MLflow's ``latest_versions``)."""
    numbers = [int(v.version) for v in model.latest_versions or []]
    return max(numbers, default=None)


def _search_versions(client: MlflowClient, name: str, name_filter: str) -> Iterator[ModelVersion]:
    token: str | None = None
    while True:
        with translate_mlflow_errors(model_not_found(name)):
            page = client.search_model_versions(
                name_filter, max_results=_PAGE_SIZE, page_token=token
            )
        yield from page
        token = page.token
        if not token:
            return


def _name_filter(name: str) -> str | None:
    """A search filter matching exactly ``name``; ``None`` if MLflow's syntax cannot quote it."""
    # MLflow's filter parser has no escapes: a value is wrapped in ' or " and taken verbatim
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return None


def _versions_one_by_one(client: MlflowClient, model: RegisteredModel) -> list[ModelVersion]:
    found: list[ModelVersion] = []
    for number in range(1, (latest_version(model) or 0) + 1):
        try:
            found.append(model_version(client, model.name, number))
        except VersionNotFound:
            continue  # deleted versions leave gaps
    return found
