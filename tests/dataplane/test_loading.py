"""Loading: models:/ URIs resolve to the registry name and version they answer as."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from greenbutton.config import Settings
from greenbutton.dataplane.loading import resolve_identity
from greenbutton.errors import ModelNotFound


@pytest.fixture
def client(digits_store: Settings) -> MlflowClient:
    """A client on the session's digits store, with alias ``production`` on version 1."""
    uri = digits_store.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("digits", "production", "1")
    return client


def test_resolve_identity_version_uri_returns_it(client: MlflowClient) -> None:
    assert resolve_identity("models:/digits/1", client) == ("digits", "1")


def test_resolve_identity_alias_returns_version(client: MlflowClient) -> None:
    assert resolve_identity("models:/digits@production", client) == ("digits", "1")


@pytest.mark.parametrize("uri", ["runs:/abc/model", "/tmp/model", "models:/m-123abc"])
def test_resolve_identity_other_uri_is_unversioned(client: MlflowClient, uri: str) -> None:
    assert resolve_identity(uri, client) == ("model", None)


def test_resolve_identity_unknown_alias_raises_model_not_found(client: MlflowClient) -> None:
    with pytest.raises(ModelNotFound):
        resolve_identity("models:/digits@nowhere", client)
