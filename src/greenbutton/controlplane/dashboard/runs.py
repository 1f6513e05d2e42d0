"""The MLflow run behind a model version: params and metrics, read through the MLflow client,
and links into the MLflow UI.

MLflow owns runs; the dashboard never copies them, it reads them when a page is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from mlflow import MlflowClient

from ...config import MlflowSettings
from ...errors import GreenbuttonError, NotFound
from ...registry.catalog import translate_mlflow_errors


@dataclass(frozen=True)
class RunSummary:
    """What a reviewer wants to see of a training run."""

    run_id: str
    status: str
    experiment_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class RunReader:
    """Reads runs by id; a run that cannot be read shows as missing, never as a 500."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def summary(self, run_id: str | None) -> RunSummary | None:
        """The run's params and latest metrics, or None when absent or unreadable."""
        if not run_id:
            return None
        try:
            with translate_mlflow_errors(lambda: NotFound(f"no run {run_id!r}")):
                run = self._client.get_run(run_id)
        except GreenbuttonError:
            return None
        return RunSummary(
            run_id=run_id,
            status=str(run.info.status),
            experiment_id=str(run.info.experiment_id),
            params=dict(sorted(run.data.params.items())),
            metrics=dict(sorted(run.data.metrics.items())),
        )


class MlflowLinks:
    """URLs of runs and model versions in the MLflow UI (None when there is no UI to link)."""

    def __init__(self, settings: MlflowSettings) -> None:
        base = settings.ui_url or settings.tracking_uri
        self.base = base.rstrip("/") if base.startswith(("http://", "https://")) else None

    def run(self, run: RunSummary | None) -> str | None:
        """The run's page."""
        if self.base is None or run is None or not run.experiment_id:
            return None
        return (f"{self.base}/#/experiments/{quote(run.experiment_id, safe='')}"
                f"/runs/{quote(run.run_id, safe='')}")

    def version(self, model: str, version: int) -> str | None:
        """The registered model version's page."""
        if self.base is None:
            return None
        return f"{self.base}/#/models/{quote(model, safe='')}/versions/{version}"
