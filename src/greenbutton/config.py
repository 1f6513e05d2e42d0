"""Process settings: pydantic-settings, prefix ``GREENBUTTON_``, ``__`` between sections.

Loaded once by :mod:`greenbutton.cli.main` (or by the public API when called from a notebook)
and passed down; no other module reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PAYLOAD_DB = Path("monitoring") / "payloads.db"
"""The default payload store, relative to the home."""


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
    ui_url: str = ""
    """Base URL of an MLflow UI showing this tracking store (``mlflow ui``, a tracking
    server), for the dashboard's links to runs and versions; empty: the tracking URI when it
    is ``http(s)://``, else no links."""


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
    stuck_call_s: PositiveFloat | None = None
    """A model call still running after this long (None: twice ``request_timeout_s``) gets
    its worker replaced: Python cannot stop the call's thread. A call on the request loop
    (fast models run there) blocks its worker, which is replaced after
    ``request_timeout_s``."""
    shutdown_timeout_s: PositiveFloat = 30.0
    """On SIGTERM, how long in-flight requests may take before the process stops anyway."""
    max_concurrency: PositiveInt = 256
    """Most requests one worker handles at once; more get 503 with ``Retry-After``."""
    workers: NonNegativeInt = 0
    """Worker processes sharing the listening socket; 0: one per CPU core this process may
    use (its affinity, capped by its container's CPU limit: cgroup ``cpu.max`` or
    ``cpu.cfs_quota_us``, rounded down, at least 1)."""
    native_threads: NonNegativeInt = 0
    """Threads of the native math pools (OpenBLAS, OpenMP) in each worker; 0: the cores
    divided among the workers, at least 1. More threads than cores spin and starve the
    other workers (OpenBLAS threads busy-wait after every parallel call)."""
    max_batch_size: PositiveInt | None = None
    """Override every model's declared ``max_batch_size`` (1 turns batching off)."""
    max_batch_wait_ms: NonNegativeFloat | None = None
    """Override every model's declared ``max_batch_wait_ms``."""
    allowed_hosts: str = ""
    """Comma-separated extra ``Host`` names accepted besides loopback (``*``: any;
    ``*.example.com``: its subdomains). Bound beyond loopback with none given (nor
    ``pod_ips``), any name is accepted. The generated Kubernetes manifests set the
    version's Service names and the Ingress host."""
    pod_ips: str = ""
    """Comma-separated addresses of this pod, accepted as ``Host`` (kubelet's probes and
    callers by pod IP send them); the generated manifests fill it from the downward API
    (``status.podIPs``)."""
    mirror_percent: float | None = Field(default=None, gt=0, le=100)
    """This process gets a copy of every request (a shadow version on Kubernetes, where the
    ingress mirrors without a percentage): call the model for this share of prediction
    requests only and answer the others 204 at once. The generated manifests set it from the
    spec's shadow percent. None: serve every request."""
    model_dir: Path | None = None
    """The served model's files are already here (the local target copies each version
    for its processes): MLflow is not asked; the model URI still names model and version."""

    @model_validator(mode="after")
    def _check_stuck_call(self) -> Self:
        if self.stuck_call_s is not None and self.stuck_call_s < self.request_timeout_s:
            raise ValueError(f"stuck_call_s ({self.stuck_call_s}) must be at least "
                             f"request_timeout_s ({self.request_timeout_s})")
        return self

    @property
    def extra_hosts(self) -> list[str]:
        """:attr:`allowed_hosts` and :attr:`pod_ips`, as a list."""
        given = f"{self.allowed_hosts},{self.pod_ips}".split(",")
        return [name.strip() for name in given if name.strip()]

    @property
    def stuck_after_s(self) -> float:
        """:attr:`stuck_call_s`, or its default (twice the request timeout)."""
        return self.stuck_call_s if self.stuck_call_s is not None else 2 * self.request_timeout_s


class ControllerSettings(BaseModel):
    """The reconcile loop and its deploy target."""

    target_uri: str = "local://"
    """Where deployments run: ``local://`` (processes on this machine)."""
    poll_interval_s: PositiveFloat = 2.0
    """Reconcile at least this often, whatever else triggers it."""
    ready_timeout_s: PositiveFloat = 120.0
    """A new serving process must become ready within this time."""
    liveness_timeout_s: PositiveFloat = 60.0
    """A ready local serving process that has not answered ``/health/live`` for this long is
    killed and restarted (a process frozen in a model call; Kubernetes probes on its own)."""
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
    replicas: PositiveInt | None = None
    """Serving replicas per routed version of a deployment whose spec does not say. None: 2
    on the local target where the machine has at least 2 cores (a replica killed or crashed
    then fails no request: the gateway sends them to the other), else 1."""
    workers_per_replica: PositiveInt = 1
    """Worker processes in each local serving replica. One keeps each replica's memory whole
    (every worker holds the model); scale a deployment with ``replicas`` instead."""
    integrity_interval_s: PositiveFloat = 10.0
    """Compare MLflow's aliases with the governed lifecycle (and put them back) this often;
    stage rows are checked on every reconcile pass."""
    leader_poll_interval_s: PositiveFloat = 1.0
    """Several replicas on one PostgreSQL store: followers try to become the leader, and the
    leader checks it still is, this often (see controller/leader.py)."""
    leader_timeout_s: PositiveFloat = 3.0
    """A leadership check that takes longer counts as lost (the leader stops reconciling)."""

    @property
    def default_replicas(self) -> int:
        """:attr:`replicas`, or its default for this target and machine."""
        if self.replicas is not None:
            return self.replicas
        is_local = self.target_uri.partition(":")[0] == "local"
        return 2 if is_local and (os.cpu_count() or 1) >= 2 else 1


class KubernetesSettings(BaseModel):
    """What the generated Kubernetes manifests need to know of the cluster
    (``kubernetes://`` targets, ``greenbutton manifests``; see docs/deployment.md)."""

    image_prefix: str = "greenbutton/"
    """Serving images are ``<prefix><model>:<version>`` (``greenbutton build``'s tag)."""
    ingress_class: str = "nginx"
    """IngressClass of the endpoints' Ingress (ingress-nginx annotations are used)."""
    ingress_host: str = ""
    """Public host name of the endpoints (``https://<host>/endpoints/<name>/``); empty: any."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain (serving pods accept ``<svc>.<ns>.svc.<domain>``)."""
    control_plane_url: str = ""
    """Where serving pods check callers' tokens; empty: ``server.url``."""
    payload_store_secret: str = "greenbutton-payloads"
    """Secret (key ``uri``) holding the SQLAlchemy URI of the payload store every serving
    pod shares (PostgreSQL), so feedback reaches any replica and drift sees every row;
    empty: each pod keeps its own SQLite file (one replica only)."""
    env_secret: str = "greenbutton-serving-tokens"
    """Optional Secret whose keys become environment variables of every serving pod: the
    credentials a serving process itself uses (alert webhooks' tokens, say) and any
    ``GREENBUTTON_*`` override; pods start without it. Empty: none."""
    has_prometheus_operator: bool = False
    """Also write a ServiceMonitor per deployment."""
    prometheus_token_secret: str = "greenbutton-prometheus"
    """Secret (key ``token``) the ServiceMonitor scrapes ``/metrics`` with: an API token
    holding ``invoke`` on the served models (endpoint auth covers ``/metrics``)."""


class MonitoringSettings(BaseModel):
    """Monitors of a serving process: drift windows, outliers, payload log, feedback, alerts."""

    is_enabled: bool = True
    """Load the model's monitors, annotate rows, log payloads and accept feedback."""
    payload_store_uri: str = ""
    """SQLAlchemy URI of the payload log and feedback tables (its own database, tables created
    on first use); default ``sqlite:///<home>/monitoring/payloads.db`` (a folder of its own:
    sandboxed serving processes write there and see nothing else of the home)."""
    window_size: PositiveInt = 100
    """Drift is tested on the model version's most recent this-many rows in the payload log
    (whichever worker or replica served them)."""
    drift_interval_s: PositiveFloat = 10.0
    """Recompute drift (off the request path) at most this often."""
    drift_alpha: PositiveFloat = 0.01
    """Family-wise false-alarm rate of one drift test over all detectors and features."""
    feedback_window_rows: PositiveInt = 200
    """Label and performance drift test the version's newest this-many labelled rows (rows
    of feedback, not requests) against its held-out rows."""
    outlier_detector: str = "mahalanobis"
    """Outlier detector fitted at log time: ``mahalanobis`` (MCD) or ``isolation_forest``."""
    outlier_target_fpr: PositiveFloat = 0.01
    """Share of clean rows flagged as outliers (threshold calibrated on cross-fitted scores of
    the reference rows)."""
    is_adversarial_enabled: bool = False
    """Feature-squeezing check per row (costs a second model call per request)."""
    buffer_size: PositiveInt = 10_000
    """Payload records held in memory before new ones are dropped (and counted)."""
    buffer_max_bytes: PositiveInt = 64 * 1024 * 1024
    """Bytes of payload records held in memory (buffered, or being written with their
    encoded copy) above which new records are dropped and counted
    (``greenbutton_payload_dropped_total``; the fill level is
    ``greenbutton_payload_buffer_bytes``). Per worker: a store that fails (a full disk) or
    lags costs about this much memory whatever the traffic: at most this plus the encoded
    copy of the one batch being written (a batch holds an eighth of this, or one larger
    record; its JSON is up to ~2.5 times its float arrays)."""
    flush_interval_s: PositiveFloat = 0.25
    """Write buffered payload records at least this often. Each flush is a burst of work on
    the worker (scoring, encoding, the insert); four small bursts a second delay fewer
    requests than one large one (c8: p99/p50 3.1 → 2.5) at no measurable cost in CPU."""
    payload_retention_days: PositiveFloat = 30.0
    """Payload records (and feedback) received longer ago than this are deleted. Feedback can
    only join a record that is still kept, so this bounds how late ground truth may arrive;
    30 days covers labels that come back within a billing month, and exports (default
    ``--since 7d``) with room to spare."""
    payload_max_rows: NonNegativeInt = 5_000_000
    """Keep at most this many payload records, the newest (0: no limit; age alone decides);
    records go a flush's batch at a time, so up to one batch fewer may remain. A size bound
    whatever the traffic: 5 M one-row 64-feature records take ~0.7 GB on SQLite, and its
    insert cost grows with the table (docs/performance.md). It is also a time window: at 1,000
    requests/s 5 M rows are ~80 minutes, so feedback arriving hours later needs a larger
    value (rate × longest feedback delay) and, at that size, PostgreSQL."""
    payload_prune_interval_s: PositiveFloat = 300.0
    """Each serving process deletes expired payload records (off the request path) at most
    this often; between two prunes the table may exceed ``payload_max_rows`` by that much
    traffic."""
    alerts_file: Path | None = None
    """JSON file of alert rules, webhook and retraining trigger (``AlertsSpec``)."""
    is_private_webhook_allowed: bool = False
    """Let alert webhooks reach loopback/private addresses (tests, in-cluster receivers)."""


class ExplainSettings(BaseModel):
    """``POST /explain``: its own limits, apart from ``/predict``'s (explaining costs more)."""

    max_concurrency: PositiveInt = 2
    """Explanations computed at once per process; more get 503 with ``Retry-After``."""
    timeout_s: PositiveFloat = 10.0
    """Time budget of one explanation (504 after it)."""
    max_rows: PositiveInt = 20
    """Most rows explained in one request (413 above)."""
    background_rows: PositiveInt = 100
    """Reference rows (seeded sample) the linear and model-agnostic explainers compare to."""
    max_evals: PositiveInt = 300
    """Model calls per row of the model-agnostic (permutation) explainer; at least
    2 × features + 1 are made."""


class AuthSettings(BaseModel):
    """Tokens, endpoint auth and approvals (see docs/governance.md)."""

    is_endpoint_auth_enabled: bool | None = None
    """Serving endpoints (all but health) need a bearer token with ``invoke`` on the model.
    Default: on whenever the control plane or a serving process listens beyond loopback,
    however the interface was chosen; it cannot be turned off there (only on loopback)."""
    token_cache_ttl_s: PositiveFloat = 2.0
    """How long a serving process trusts a token check (revocation takes effect after it)."""
    token_ttl_days: PositiveInt | None = 90
    """Lifetime of newly issued tokens (none: they never expire)."""
    is_four_eyes_default: bool = False
    """Four-eyes approval for models without their own policy (on for regulated teams)."""
    gate_timeout_s: PositiveFloat = 300.0
    """Time budget of one proposal's gates (they run in a separate process)."""
    gate_lease_s: PositiveFloat = 10.0
    """A proposal whose gates are running is held by its control plane's lease, renewed every
    third of this; when that control plane dies, the proposal is failed on the record (by any
    control plane on the store) at most this long plus half of it later."""
    audit_key_file: Path | None = None
    """The key that seals audit entries (HMAC), readable by the control plane only; created
    on first start if missing. Default ``<home>/audit.key``; control-plane replicas on one
    PostgreSQL store must share one key (e.g. a mounted Secret)."""


class SandboxSettings(BaseModel):
    """How model code runs outside a serving process (gates, explanation pictures): see
    docs/governance.md."""

    user: str = "nobody"
    """Unprivileged user that runs model code when greenbutton itself runs as root."""
    is_unconfined_allowed: bool = False
    """Run model code even where neither namespaces nor another user can hide the platform's
    files from it (a non-root install whose kernel refuses user namespaces). Off: such runs
    fail (a proposal's ``sandbox`` gate fails, with the reason)."""
    hidden_paths: str = ""
    """Comma-separated extra folders model code must not see (the home, your home, the
    current folder, temp folders and the embedded stores' folders always are)."""
    max_output_bytes: PositiveInt = 32 * 1024 * 1024
    """Largest answer accepted from a sandboxed run (larger: the run fails)."""
    max_file_bytes: PositiveInt = 1024 * 1024 * 1024
    """Largest file a sandboxed run may write in its work folder."""
    is_serving_sandboxed: bool = True
    """Local serving processes run in the sandbox too (network allowed): they see their
    version's copy, the payload store's folder and nothing else of the platform."""


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
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    explain: ExplainSettings = Field(default_factory=ExplainSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    token: str | None = Field(default=None, repr=False)
    """Bearer token of the CLI and client (``GREENBUTTON_TOKEN``); default: the token file
    ``<home>/admin.token`` written by the first ``greenbutton up``."""

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
        if not self.monitoring.payload_store_uri:
            self.monitoring.payload_store_uri = f"sqlite:///{self.home / PAYLOAD_DB}"
        if self.auth.audit_key_file is None:
            self.auth.audit_key_file = self.home / "audit.key"
        if self.auth.is_endpoint_auth_enabled is False and self.is_beyond_loopback:
            raise ValueError("auth.is_endpoint_auth_enabled cannot be false while "
                             f"{self.server.host} or {self.serving.host} (a listener beyond "
                             "loopback) is configured")
        return self

    @property
    def scrape_targets_file(self) -> Path:
        """Prometheus ``file_sd`` targets the controller keeps up to date (local target):
        every serving process, labelled model, version and route."""
        return self.home / "prometheus" / "targets.json"

    @property
    def is_beyond_loopback(self) -> bool:
        """The control plane or a serving process listens on more than loopback."""
        return not {self.server.host, self.serving.host} <= LOOPBACK

    @property
    def is_endpoint_auth_required(self) -> bool:
        """Serving endpoints need a token: always beyond loopback, else as configured."""
        return self.is_beyond_loopback or bool(self.auth.is_endpoint_auth_enabled)

    def listening(self, *, server_host: str | None = None, server_port: int | None = None,
                  serving_host: str | None = None, serving_port: int | None = None) -> Settings:
        """These settings with the listeners a command line chose (validated again, so every
        rule that depends on where we listen holds)."""
        server = self.server.model_dump()
        if server_host or server_port:
            server.update(host=server_host or self.server.host,
                          port=server_port or self.server.port, url="")
        serving = {**self.serving.model_dump(), "host": serving_host or self.serving.host,
                   "port": serving_port or self.serving.port}
        return Settings(**{**self.model_dump(), "server": server,
                           "serving": serving}, _env_file=None)

    def environ(self) -> dict[str, str]:
        """These settings as ``GREENBUTTON_*`` variables, for child processes."""
        env = {"GREENBUTTON_HOME": str(self.home)}
        for section in ("mlflow", "store", "server", "serving", "controller", "kubernetes",
                        "monitoring", "explain", "auth", "sandbox"):
            for key, value in getattr(self, section).model_dump().items():
                if value is not None:
                    env[f"GREENBUTTON_{section.upper()}__{key.upper()}"] = str(value)
        return env

    def serving_environ(self) -> dict[str, str]:
        """What a serving process started by the controller needs to know, and nothing of
        the platform's store, keys or tokens (it runs model code)."""
        kept = ("GREENBUTTON_HOME", "GREENBUTTON_MLFLOW__", "GREENBUTTON_SERVER__",
                "GREENBUTTON_SERVING__", "GREENBUTTON_MONITORING__", "GREENBUTTON_EXPLAIN__",
                "GREENBUTTON_AUTH__TOKEN_CACHE_TTL_S", "GREENBUTTON_AUTH__IS_ENDPOINT_AUTH")
        return {k: v for k, v in self.environ().items() if k.startswith(kept)}
