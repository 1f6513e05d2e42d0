"""Process settings: pydantic-settings, prefix ``GREENBUTTON_``, ``__`` between sections.

Loaded once by :mod:`greenbutton.cli` (or by the public API when called from a notebook)
and passed down; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseModel):
    """Where MLflow, the system of record, lives."""

    tracking_uri: str = ""
    """MLflow tracking URI; empty: ``sqlite:///<home>/mlflow.db``."""
    registry_uri: str = ""
    """MLflow model registry URI; empty: the tracking URI."""
    artifact_root: str = ""
    """Default artifact location for new experiments; empty: ``<home>/artifacts``."""
    experiment: str = "greenbutton"
    """Experiment that ``log_model`` uses when no MLflow run is active."""


class StoreSettings(BaseModel):
    """greenbutton's own store (lifecycle, deployments, later governance)."""

    uri: str = ""
    """SQLAlchemy URI (``sqlite:///…``, ``postgresql://…``) or ``memory://``; empty:
    ``sqlite:///<home>/greenbutton.db``."""


class ServerSettings(BaseModel):
    """The control plane's HTTP API (``greenbutton up``)."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: PositiveInt = 8600
    """Port of the control-plane API and of the stable endpoint URLs."""
    url: str = ""
    """URL the CLI uses to reach the control plane; empty: ``http://<host>:<port>``."""


class ServingSettings(BaseModel):
    """Limits and behaviour of a serving process (``greenbutton serve``)."""

    host: str = "127.0.0.1"
    """Interface a serving process listens on."""
    port: PositiveInt = 8700
    """Port for ``greenbutton serve`` when none is given."""
    max_body_bytes: PositiveInt = 5 * 1024 * 1024
    """Largest request body accepted; larger bodies get 413 before they are read."""
    max_rows: PositiveInt = 10_000
    """Most rows accepted in one request (413 above)."""
    request_timeout_s: PositiveFloat = 30.0
    """Time budget of one prediction (504 after it)."""
    shutdown_timeout_s: PositiveFloat = 30.0
    """On SIGTERM, how long in-flight requests may take before the process stops anyway."""


class ControllerSettings(BaseModel):
    """The reconcile loop and its deploy target."""

    target_uri: str = "local://"
    """Where deployments run: ``local://`` (processes on this machine)."""
    poll_interval_s: PositiveFloat = 2.0
    """Reconcile at least this often, whatever else triggers it."""
    ready_timeout_s: PositiveFloat = 120.0
    """A new serving process must become ready within this time."""
    drain_timeout_s: PositiveFloat = 30.0
    """How long a replaced process may take to finish its in-flight requests."""
    ready_poll_interval_s: PositiveFloat = 0.25
    """Reconcile this often while a process is starting or draining."""
    restart_backoff_s: PositiveFloat = 1.0
    """Wait before the first restart of a failed process; doubles after each failure."""
    restart_backoff_max_s: PositiveFloat = 60.0
    """Longest wait between restarts; a process ready this long has its failures forgotten."""
    gateway_max_connections: PositiveInt = 256
    """Most upstream connections the gateway opens at once (503 when all are busy)."""


class Settings(BaseSettings):
    """All of greenbutton's process configuration."""

    model_config = SettingsConfigDict(
        env_prefix="GREENBUTTON_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    home: Path = Path(".greenbutton")
    """Folder for the embedded defaults (SQLite files, artifacts, logs)."""
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Self:
        self.home = self.home.expanduser().resolve()
        if not self.mlflow.tracking_uri:
            self.mlflow.tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if not self.mlflow.registry_uri:
            self.mlflow.registry_uri = self.mlflow.tracking_uri
        if not self.mlflow.artifact_root:
            self.mlflow.artifact_root = (self.home / "artifacts").as_uri()
        if not self.store.uri:
            self.store.uri = f"sqlite:///{self.home / 'greenbutton.db'}"
        if not self.server.url:
            self.server.url = f"http://{self.server.host}:{self.server.port}"
        return self

    def environ(self) -> dict[str, str]:
        """These settings as ``GREENBUTTON_*`` variables, for child processes."""
        env = {"GREENBUTTON_HOME": str(self.home)}
        for section in ("mlflow", "store", "server", "serving", "controller"):
            for key, value in getattr(self, section).model_dump().items():
                if value is not None:
                    env[f"GREENBUTTON_{section.upper()}__{key.upper()}"] = str(value)
        return env
