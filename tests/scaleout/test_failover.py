"""Two `greenbutton up` replicas on one PostgreSQL (greenbutton store + MLflow tracking), model
artifacts on S3 (s3rver), one home for the local target: SIGKILL of the leader mid-rollout →
the other replica leads within 10 s and converges with no duplicate serving process."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton
from greenbutton.config import Settings
from greenbutton.controller.targets.local_records import load_records

from .cluster import Cluster, serving_processes, wait_for
from .conftest import BUCKET, mlflow_pg

pytestmark = pytest.mark.slow


def _digits() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    return X, y


def _log(settings: Settings, C: float) -> int:
    class Digits(greenbutton.Model):
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

    X, y = _digits()
    clf = LogisticRegression(C=C, max_iter=300).fit(X, y)
    logged = greenbutton.log_model(Digits(clf), "digits", reference_data=X, settings=settings,
                                   pip_requirements=["scikit-learn", "pandas"])
    return int(logged.version)


def scaleout_settings(home: Path, store_uri: str) -> Settings:
    return Settings(home=home, _env_file=None,  # type: ignore[call-arg]
                    store={"uri": store_uri},  # type: ignore[arg-type]
                    mlflow={"tracking_uri": mlflow_pg(store_uri),  # type: ignore[arg-type]
                            "artifact_root": f"s3://{BUCKET}/artifacts"},
                    controller={"poll_interval_s": 0.5,  # type: ignore[arg-type]
                                "leader_poll_interval_s": 0.5, "drain_timeout_s": 5})


def _deployment(cluster: Cluster, replica: Any) -> dict[str, Any] | None:
    with cluster.client(replica) as client:
        return next((d for d in client.deployments() if d["name"] == "digits"), None)


def _served_version(url: str, body: dict[str, Any]) -> str | None:
    answer = httpx.post(f"{url}/endpoints/digits/predict", json=body, timeout=30)
    return str(answer.json()["model"]["version"]) if answer.status_code == 200 else None


class Traffic(threading.Thread):
    """Requests to one gateway, one every 50 ms (at most ``MAX_REQUESTS``), until stopped:
    the answers by status."""

    MAX_REQUESTS = 4000

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.answers: Counter[int] = Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            for _ in range(self.MAX_REQUESTS):
                if self.stopped.wait(0.05):
                    return
                try:
                    status = client.post(f"{self.url}/endpoints/digits/predict",
                                         json=self.body).status_code
                except httpx.TransportError:
                    status = 0
                self.answers[status] += 1

    def finish(self) -> Counter[int]:
        self.stopped.set()
        self.join(30)
        return self.answers


def _versions_running(home: Path) -> Counter[str]:
    return Counter(model for model, _ in serving_processes(home).values())


def test_sigkill_leader_mid_rollout_takeover_without_duplicates(
        tmp_path: Path, fresh_pg: str, s3_env: dict[str, str]) -> None:
    settings = scaleout_settings(tmp_path / "gb", fresh_pg)
    settings.home.mkdir(parents=True)
    v1 = _log(settings, C=1.0)  # MLflow's tables created here, before the replicas start
    cluster = Cluster(settings, s3_env)
    try:
        first, second = cluster.start(), cluster.start()
        wait_for(lambda: len(cluster.leaders()) == 1, 10, "one leader")
        leader = cluster.leaders()[0]
        follower = second if leader is first else first
        assert not follower.is_leader()

        with cluster.client(follower) as client:  # a follower serves the API too
            client.transition("digits", v1, "Production", actor="alice", reason="first")
        wait_for(lambda: (d := _deployment(cluster, leader)) and d["state"] == "ready"
                 and d["serving_version"] == v1, 120, "v1 ready", leader)

        X, y = _digits()
        body = {"inputs": X.head(2).to_dict(orient="records")}
        wait_for(lambda: _served_version(follower.url, body) == str(v1), 10,
                 "the follower's gateway serves v1 too (routes shared by the leader)")

        v2 = _log(settings, C=0.5)
        with cluster.client(follower) as client:
            client.transition("digits", v2, "Production", actor="alice", reason="second")
        state_file = settings.home / "run" / "local-target.json"
        wait_for(lambda: any(r.version == v2 and r.pid for r in load_records(state_file)),
                 30, "v2 spawned", leader)
        assert _deployment(cluster, leader)["serving_version"] == v1  # type: ignore[index]
        traffic = Traffic(follower.url, body)  # through the leader change, on the follower
        traffic.start()
        leader.process.send_signal(signal.SIGKILL)  # mid-rollout: v2 starting, v1 routed
        killed_at = time.monotonic()
        leader.process.wait(timeout=10)

        wait_for(follower.is_leader, 10, "takeover", follower)
        takeover_s = time.monotonic() - killed_at
        wait_for(lambda: (d := _deployment(cluster, follower)) and d["state"] == "ready"
                 and d["serving_version"] == v2, 120, "v2 ready on the new leader", follower)
        answers = traffic.finish()
        assert set(answers) == {200}, f"the stable URL failed during the leader change: {answers}"
        replicas = settings.controller.default_replicas
        wait_for(lambda: _versions_running(settings.home)
                 == Counter({f"models:/digits/{v2}": replicas}), 30,
                 f"v1 drained and stopped, v2 on {replicas} replica(s)", follower)

        running = serving_processes(settings.home)
        assert len(running) == replicas
        ports = [port for _, port in running.values()]
        assert len(set(ports)) == len(ports)
        # the state file is rewritten once the drained v1 has exited, a moment after it is gone
        expected = sorted((v2, pid) for pid in running)
        wait_for(lambda: sorted((r.version, r.pid) for r in load_records(state_file) if r.pid)
                 == expected, 10, "the state file records v2 only", follower)
        assert _served_version(follower.url, body) == str(v2)
        log = follower.log.read_text()
        assert "adopting" in log and "elected leader" in log
        print(json.dumps({"takeover_s": round(takeover_s, 2), "answers": dict(answers)}))
    finally:
        cluster.stop()
