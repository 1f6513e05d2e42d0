"""The MLflow run behind a model version: params and metrics, read through the MLflow client.

MLflow owns runs; the dashboard never copies them, it reads them when a page is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow import MlflowClient

from ...errors import GreenbuttonError, NotFound
from ...registry.catalog import translate_mlflow_errors


@dataclass(frozen=True)
class RunSummary:
    """What a reviewer wants to see of a training run."""

    run_id: str
    status: str
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
            params=dict(sorted(run.data.params.items())),
            metrics=dict(sorted(run.data.metrics.items())),
        )
