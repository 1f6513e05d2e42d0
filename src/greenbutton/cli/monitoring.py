"""The monitoring commands of the CLI: ``greenbutton export``, ``payload prune`` and
``monitoring-config``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..config import Settings
from ..errors import InvalidInput
from ..monitoring.export import export_dataset, parse_since
from ..monitoring.payload_batches import utc_now
from ..monitoring.payload_store import PayloadStore
from ..monitoring.prometheus import alert_rules, grafana_dashboard, render_yaml, scrape_config


def export(settings: Settings, args: argparse.Namespace) -> int:
    """Write the payload-log dataset of ``args.model``; print where and how many rows."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = PayloadStore(settings.monitoring.payload_store_uri)
    try:
        if args.log_to_mlflow:
            import mlflow

            from ..registry.tracking import open_mlflow

            open_mlflow(settings.mlflow)
            mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        result = export_dataset(
            store, args.model, parse_since(args.since),
            args.output or Path(f"{args.model}-export.parquet"),
            exclude_outliers=args.exclude_outliers, with_feedback=args.with_feedback,
            log_to_mlflow=args.log_to_mlflow, on_progress=Progress())
    finally:
        store.close()
    run = f" (MLflow run {result.run_id})" if result.run_id else ""
    print(f"wrote {result.rows} rows to {result.path}{run}")
    return 0


class Progress:
    """Prints the rows exported so far to stderr, at most every ``interval_s`` (a week of
    traffic takes minutes)."""

    def __init__(self, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._next = clock() + interval_s

    def __call__(self, rows: int) -> None:
        if self.clock() >= self._next:
            print(f"... {rows:,} rows so far", file=sys.stderr, flush=True)
            self._next = self.clock() + self.interval_s


def payload_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete payload records (and feedback) beyond retention now; print how many."""
    if args.older_than is not None:
        try:
            cutoff = parse_since(args.older_than)
        except InvalidInput:
            raise InvalidInput(f"--older-than must be like 7d, 12h or an ISO time, got "
                               f"{args.older_than!r}", field="older_than") from None
    else:
        days = settings.monitoring.payload_retention_days
        cutoff = utc_now() - datetime.timedelta(days=days)
    max_rows = settings.monitoring.payload_max_rows if args.max_rows is None else args.max_rows
    if max_rows < 0:
        raise InvalidInput("--max-rows must be 0 (no limit) or more", field="max_rows")
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = PayloadStore(settings.monitoring.payload_store_uri)
    try:
        rows = store.prune(cutoff, max_rows)
        feedback = store.prune_feedback(cutoff)
    finally:
        store.close()
    limit = f" or beyond the newest {max_rows}" if max_rows else ""
    print(f"deleted {rows} payload records and {feedback} feedback records received before "
          f"{cutoff.isoformat(timespec='seconds')}{limit}")
    return 0


def monitoring_config(settings: Settings, args: argparse.Namespace) -> int:
    """Write ``prometheus.yml``, ``greenbutton_rules.yml`` and one dashboard per target."""
    targets: dict[str, str] = {}
    for item in args.target:
        name, _, address = item.partition("=")
        if not address:
            raise InvalidInput(f"--target must be NAME=HOST:PORT, got {item!r}", field="target")
        targets[name] = address
    folder: Path = args.directory
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(render_yaml(scrape_config(targets)))
    (folder / "greenbutton_rules.yml").write_text(render_yaml(alert_rules()))
    for name in targets:
        (folder / f"grafana-{name}.json").write_text(json.dumps(grafana_dashboard(name), indent=1))
    print(f"wrote Prometheus and Grafana files for {len(targets)} deployment(s) to {folder}")
    return 0
