"""A real Prometheus (Debian's package) scrapes a live serving endpoint and returns the drift gauge.

Also checks the generated alert rules and scrape config with ``promtool``. Skipped when
Prometheus is not installed (``make test-deps`` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from mlflow.models import infer_signature
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from greenbutton.config import Settings
from greenbutton.controller.reconcile import InstanceState, ObservedDeployment, VersionRef
from greenbutton.controller.scrape_targets import ScrapeTargetFile
from greenbutton.dataplane.hooks import ServingPlugins
from greenbutton.dataplane.process import build_serving_app
from greenbutton.monitoring.monitors import fit_monitors
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.prometheus import alert_rules, render_yaml, scrape_config
from greenbutton.monitoring.runtime import MonitoringRuntime

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                       reason="prometheus not installed: run make test-deps"),
]
DRIFT_QUERY = 'greenbutton_drift_detected{detector="overall",feature=""}'


class Digits(mlflow.pyfunc.PythonModel):
    def __init__(self, clf: LogisticRegression) -> None:
        self.clf = clf

    def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> object:
        return self.clf.predict(model_input)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_generated_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "greenbutton_rules.yml"
    rules.write_text(render_yaml(alert_rules(min_accuracy=0.9, min_reward=0.0)))
    done = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(render_yaml(scrape_config({"digits": "127.0.0.1:8700"})))
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


PAYLOAD_DROPS = {
    "rule_files": ["greenbutton_rules.yml"],
    "evaluation_interval": "1m",
    "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": 'greenbutton_payload_dropped_total{model="digits",version="3",'
                       'instance="a"}', "values": "0 0 0 5 10 15 15 15 15 15 15 15"},
            {"series": 'greenbutton_payload_dropped_total{model="wine",version="1",'
                       'instance="b"}', "values": "0 0 0 0 0 0 0 0 0 0 0 0"},
        ],
        "alert_rule_test": [
            {"eval_time": "2m", "alertname": "GreenbuttonPayloadDropped", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "GreenbuttonPayloadDropped", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "model": "digits", "version": "3"},
                "exp_annotations": {"summary": "Payload records dropped on digits v3: its "
                                    "payload store cannot keep up or cannot write (disk "
                                    "full?)"}}]},
            {"eval_time": "11m", "alertname": "GreenbuttonPayloadDropped", "exp_alerts": []},
        ],
    }],
}


def test_dropped_payload_records_raise_an_alert_from_the_first_drop(tmp_path: Path) -> None:
    """promtool's rule unit test: the alert fires in the minute the counter first moves, for
    that model and version only, and clears once nothing has been dropped for 5 minutes."""
    (tmp_path / "greenbutton_rules.yml").write_text(render_yaml(alert_rules()))
    cases = tmp_path / "drops_test.yml"
    cases.write_text(render_yaml(PAYLOAD_DROPS))
    done = subprocess.run(["promtool", "test", "rules", str(cases)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a monitored digits model, fitted and saved once for the module: every
    server copies it to a folder of its own before loading, so none changes it."""
    folder = tmp_path_factory.mktemp("digits-model")
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    clf = LogisticRegression(max_iter=500).fit(X, y)
    artifacts = fit_monitors(X, clf.predict(X), folder / "fit", with_mmd=False)
    mlflow.pyfunc.save_model(folder / "model", python_model=Digits(clf), artifacts=artifacts,
                             signature=infer_signature(X, y.to_numpy()), input_example=X[:2])
    return folder / "model"


@contextlib.asynccontextmanager
async def serve_digits(model: Path, folder: Path) -> AsyncIterator[str]:
    """``model`` served by uvicorn on a loopback port (the real app build), its home in
    ``folder``."""
    settings = Settings(home=folder / "gb", _env_file=None)  # type: ignore[call-arg]
    settings.home.mkdir()
    settings.monitoring.drift_interval_s = 0.2
    store = PayloadStore(settings.monitoring.payload_store_uri)
    runtime = MonitoringRuntime(settings.monitoring, store)
    plugins = ServingPlugins(routes=runtime.routes(), hooks=runtime.hooks)
    app = build_serving_app(settings, str(model), plugins=plugins)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(300):  # bounded wait for the model to load
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health/ready")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        store.close()


@pytest.fixture
async def serving_url(digits_model: Path, tmp_path: Path) -> AsyncIterator[str]:
    """One monitored digits endpoint."""
    async with serve_digits(digits_model, tmp_path) as url:
        yield url


@contextlib.contextmanager
def prometheus(folder: Path, config: dict[str, object]) -> Iterator[str]:
    """A real Prometheus on a loopback port scraping as ``config`` says; its URL."""
    (folder / "prometheus.yml").write_text(render_yaml(config))
    port = free_port()
    with open(folder / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def test_prometheus_scrapes_drift_gauge_from_live_endpoint(serving_url: str,
                                                                 tmp_path: Path) -> None:
    inverted = 16.0 - load_digits().data[:100]
    rows = pd.DataFrame(inverted, columns=[f"pixel_{i}" for i in range(64)])
    async with httpx.AsyncClient(base_url=serving_url, timeout=30) as client:
        answer = await client.post("/predict", json={"inputs": rows.to_dict(orient="records")})
        assert answer.status_code == 200
        monitoring = (await client.get("/monitoring", params={"refresh": "1"})).json()
    assert monitoring["drift"]["overall"]["is_drift"] is True

    address = serving_url.removeprefix("http://")
    config = scrape_config({"digits": address}, interval_s=1)
    config.pop("rule_files")
    (tmp_path / "prometheus.yml").write_text(render_yaml(config))
    prom_port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
    try:
        value = await _query_until_present(f"http://127.0.0.1:{prom_port}", DRIFT_QUERY)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert value == 1.0, (tmp_path / "prometheus.log").read_text()[-2000:]


async def _query_until_present(prometheus: str, query: str, timeout_s: float = 60) -> float:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as client:
        while asyncio.get_running_loop().time() < deadline:
            # still starting: no answer yet, or a plain-text 503
            with contextlib.suppress(httpx.TransportError, ValueError):
                body = (await client.get("/api/v1/query", params={"query": query})).json()
                result = body.get("data", {}).get("result", [])
                if result:
                    return float(np.max([float(r["value"][1]) for r in result]))
            await asyncio.sleep(0.5)
    return float("nan")


async def test_prometheus_finds_serving_processes_in_the_controllers_targets_file(
    serving_url: str, tmp_path: Path
) -> None:
    ref = VersionRef("digits-route", "digits", 1)
    ScrapeTargetFile(tmp_path / "targets.json").write(
        [ObservedDeployment(ref, InstanceState.READY, serving_url)])
    config = scrape_config({}, interval_s=1, file_sd="targets.json")
    config.pop("rule_files")
    (tmp_path / "prometheus.yml").write_text(render_yaml(config))
    async with httpx.AsyncClient(base_url=serving_url, timeout=30) as client:
        rows = pd.DataFrame(load_digits().data[:5], columns=[f"pixel_{i}" for i in range(64)])
        assert (await client.post("/predict", json={
            "inputs": rows.to_dict(orient="records")})).status_code == 200
    prom_port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=log, stderr=log)
    try:
        up = await _query_until_present(f"http://127.0.0.1:{prom_port}",
                                        'up{route="digits-route",version="1",model="digits"}')
        requests = await _query_until_present(f"http://127.0.0.1:{prom_port}",
                                              'sum(greenbutton_requests_total'
                                              '{route="digits-route"})')
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert up == 1.0, (tmp_path / "prometheus.log").read_text()[-2000:]
    assert requests >= 1.0


async def test_scrape_follows_a_rollout_without_gaps_for_the_version_that_stays(
    digits_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    async with (serve_digits(digits_model, tmp_path / "v1") as v1,
                serve_digits(digits_model, tmp_path / "v2") as v2):
        targets = ScrapeTargetFile(tmp_path / "targets.json")

        def observed(*urls: tuple[int, str]) -> list[ObservedDeployment]:
            return [ObservedDeployment(VersionRef("digits", "digits", version),
                                       InstanceState.READY, url) for version, url in urls]

        targets.write(observed((1, v1)))
        config = scrape_config({}, interval_s=1, file_sd="targets.json")
        config.pop("rule_files")
        with prometheus(tmp_path, config) as prom:
            assert await _query_until_present(prom, 'up{version="1"}') == 1.0
            targets.write(observed((1, v1), (2, v2)))  # the new version starts
            assert await _query_until_present(prom, 'up{version="2"}') == 1.0
            rows = pd.DataFrame(load_digits().data[:2], columns=[f"pixel_{i}" for i in range(64)])
            async with httpx.AsyncClient(timeout=30) as client:
                for i in range(20):  # traffic on the version that stays, through the switch
                    answer = await client.post(f"{v2}/predict", json={
                        "inputs": rows.to_dict(orient="records")})
                    assert answer.status_code == 200
                    await asyncio.sleep(0.25)
                    if i == 5:
                        targets.write(observed((2, v2)))  # the old version is gone
            await asyncio.sleep(3)
            samples = await _query_until_present(prom, 'count_over_time(up{version="2"}[8s])')
            lowest = await _query_until_present(prom, 'min_over_time(up{version="2"}[8s])')
            v1_now = await _query_until_present(prom, 'absent(up{version="1"})', timeout_s=20)
            served = await _query_until_present(
                prom, 'sum(increase(greenbutton_requests_total{version="",route="digits",'
                f'instance="{v2.removeprefix("http://")}"}}[20s]))')
    log = (tmp_path / "prometheus.log").read_text()[-2000:]
    assert samples >= 6 and lowest == 1.0, log  # scraped every second, never down
    assert v1_now == 1.0, log  # the old target was dropped (absent() is 1)
    assert served > 0, log
