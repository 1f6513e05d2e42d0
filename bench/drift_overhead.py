"""What monitoring costs on the request path: /predict throughput with and without it.

    .venv/bin/python bench/drift_overhead.py [--requests 500] [--rounds 7]

In-process ASGI (no network), one-row digits requests one after another, so the figure is the
relative cost of the outlier annotator + payload-log and drift-window sinks per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import load_served_model
from greenbutton.dataplane.metrics import Metrics
from greenbutton.monitoring.monitors import fit_monitors
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.runtime import MonitoringRuntime


class Digits(mlflow.pyfunc.PythonModel):
    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.clf.predict(model_input)


async def build(folder: Path, *, is_monitored: bool) -> tuple[Any, DataPlane]:
    settings = Settings(home=folder / f"gb-{is_monitored}", _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir()
    dst = folder / f"dst-{is_monitored}"
    dst.mkdir()
    served = load_served_model(str(folder / "model"), settings.mlflow, dst)
    plane = DataPlane(settings.serving, Metrics(), served)
    routes: list[Any] = []
    if is_monitored:
        runtime = MonitoringRuntime(settings.monitoring,
                                    PayloadStore(settings.monitoring.payload_store_uri))
        hooks = runtime.hooks(served, plane.metrics)
        plane.add_hooks(hooks.annotators, hooks.sinks)
        routes = runtime.routes()
    await plane.warm_up()
    return create_app(settings, plane, extra_routes=routes), plane


async def throughput(app: Any, bodies: list[dict[str, Any]]) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        started = time.perf_counter()
        for body in bodies:
            await client.post("/predict", json=body)
        return len(bodies) / (time.perf_counter() - started)


async def compare(folder: Path, requests: int, rounds: int) -> tuple[float, float]:
    """Median throughput without and with monitoring, rounds interleaved against noise."""
    rows = load_digits(as_frame=True).data
    rows.columns = [f"pixel_{i}" for i in range(64)]
    bodies = [{"inputs": rows.iloc[[i % len(rows)]].to_dict(orient="records")}
              for i in range(requests)]
    (plain_app, plain), (monitored_app, monitored) = (
        await build(folder, is_monitored=False), await build(folder, is_monitored=True))
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for is_monitored, app in ((False, plain_app), (True, monitored_app)):
            results[is_monitored].append(await throughput(app, bodies))
    await plain.aclose()
    await monitored.aclose()
    return statistics.median(results[False]), statistics.median(results[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    clf = LogisticRegression(max_iter=500).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        artifacts = fit_monitors(X, clf.predict(X), folder / "fit")
        mlflow.pyfunc.save_model(folder / "model", python_model=Digits(clf), artifacts=artifacts,
                                 signature=infer_signature(X, y.to_numpy()), input_example=X[:2])
        plain, monitored = asyncio.run(compare(folder, args.requests, args.rounds))
    print(f"- /predict throughput, one-row requests in-process: {plain:.0f} req/s without "
          f"monitoring, {monitored:.0f} req/s with it: cost {100 * (1 - monitored / plain):.1f} %")


if __name__ == "__main__":
    main()
