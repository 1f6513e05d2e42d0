"""Controller figures (issues 6 and 23), on the local target with a real ``greenbutton up``:

* button -> endpoint ready: promotion sent (gates included) -> first successful prediction
  by the promoted version through the stable URL, for a scikit-learn model, default settings
  (2 replicas on 2+ cores): the first deployment, then four swaps, each once the previous
  rollout has settled; median of 5 and spread (target < 5 s);
* failed requests while a new version rolls out under concurrent load (target 0);
* the same with ``kill -9`` of ``greenbutton up`` while the new version starts, then a
  restart: every answer must still be a 200 (requests in flight when it dies and connections
  refused while no control plane listens are counted apart: one control plane cannot avoid
  them).

    .venv/bin/python bench/controller_rollout.py [--clients 8] [--write docs/performance.md]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet

import greenbutton
from greenbutton.cli.governance import local_token
from greenbutton.client import ControlPlaneClient
from greenbutton.config import Settings
from greenbutton.controller.targets.local_records import load_records

UNREACHABLE = "unreachable"
CUT = "cut"
"""With a crash: requests whose connection closed with no answer when the control plane died."""
SECTION = "## Controller: button → endpoint, rollout under load (issue 6)"


def regressor(estimator: Any) -> greenbutton.Model:
    """A greenbutton model around a fitted scikit-learn regressor (class logged by value)."""

    class Regressor(greenbutton.Model):
        def __init__(self, estimator: Any) -> None:
            self.estimator = estimator

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.estimator.predict(model_input)

    return Regressor(estimator)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def _is_up(client: ControlPlaneClient) -> bool:
    try:
        client.health()
        return True
    except Exception:
        return False


class Platform:
    """``greenbutton up`` on one home, which the crash figure kills and starts again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._log = (settings.home / "up.log").open("ab")
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"], stdout=self._log,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, **self.settings.environ()})
        assert self.settings.server.url is not None
        with ControlPlaneClient(self.settings.server.url) as probe:
            _wait(lambda: _is_up(probe), 120, "the control plane")
        return process

    def crash_and_restart(self, version: int) -> dict[str, Any]:
        """Once ``version`` has a serving process starting: kill -9, then start again."""
        records = self.settings.home / "run" / "local-target.json"
        _wait(lambda: any(r.version == version and r.pid for r in load_records(records)), 60,
              f"v{version} starting")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        killed = time.monotonic()
        self.process = self._spawn()
        return {"down_s": time.monotonic() - killed}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._log.close()


def run(clients: int) -> dict[str, Any]:
    """Start a platform in a temp home, measure, stop it; returns the figures."""
    home = Path(tempfile.mkdtemp(prefix="gb-bench-"))
    settings = Settings(home=home, server={"port": _free_port()},  # type: ignore[arg-type]
                        controller={"poll_interval_s": 0.5}, _env_file=None)
    platform = Platform(settings)
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    body = {"inputs": X.head(2).to_dict(orient="records")}
    try:
        assert settings.server.url is not None
        url = f"{settings.server.url}/endpoints/diabetes/predict"
        for alpha in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4):
            greenbutton.log_model(regressor(ElasticNet(alpha=alpha).fit(X, y)), "diabetes",
                                  reference_data=X, settings=settings,
                                  pip_requirements=["scikit-learn", "pandas"])
        token = local_token(settings)
        with ControlPlaneClient(settings.server.url, token=token,
                                timeout_s=settings.auth.gate_timeout_s) as api, \
                httpx.Client(timeout=30) as http:
            buttons = [_button(api, http, url, body, version) for version in range(1, 6)]
            figures = _rollout(api, url, body, clients, version=6)
            _wait(lambda: _is_settled(api), 120, "the v6 rollout to settle")
            crashed = _rollout(api, url, body, clients, version=7,
                               during=lambda: platform.crash_and_restart(7))
        return {"button_to_ready_s": statistics.median(buttons), "buttons_s": buttons,
                "clients": clients, **figures, "crash": crashed}
    finally:
        platform.stop()


def _is_settled(api: ControlPlaneClient) -> bool:
    """Nothing rolling out: every replica of the serving version ready, the old ones gone."""
    return all(d["summary"] == "ready" for d in api.deployments())


def _button(api: ControlPlaneClient, http: httpx.Client, url: str, body: dict[str, Any],
            version: int) -> float:
    """Seconds from sending the promotion (gates run in that request) to the first 200
    answered by ``version`` through the stable URL."""

    def is_answered_by_version() -> bool:
        response = http.post(url, json=body)
        return response.status_code == 200 and \
            response.headers.get("x-greenbutton-version") == str(version)

    _wait(lambda: _is_settled(api), 120, "the previous rollout to settle")
    sent = time.monotonic()
    api.transition("diabetes", version, "Production", actor="bench")
    _wait(is_answered_by_version, 120, f"v{version}")
    return time.monotonic() - sent


def _rollout(api: ControlPlaneClient, url: str, body: dict[str, Any], clients: int, *,
             version: int, during: Callable[[], dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """v(version - 1) -> v(version) under ``clients`` closed-loop clients; ``during`` runs
    right after the promotion (e.g. a control-plane crash) and adds its figures."""
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post(url, json=body)
                    key = (f"v{response.headers.get('x-greenbutton-version')}"
                           if response.status_code == 200 else f"HTTP {response.status_code}")
                except httpx.ConnectError:
                    key = UNREACHABLE  # nothing listening: the control plane is down
                    time.sleep(0.01)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    key = CUT  # the connection closed with no answer
                except httpx.HTTPError as error:
                    key = type(error).__name__
                with lock:
                    outcomes[key] += 1

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    api.transition("diabetes", version, "Production", actor="bench")
    started = time.monotonic()
    extra = during() if during is not None else {}
    _wait(lambda: outcomes[f"v{version}"] > 0, 120, f"v{version}")
    switch_s = time.monotonic() - started
    time.sleep(1.5)  # the old version drains and stops under load
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    total = sum(outcomes.values())
    answered = outcomes[f"v{version - 1}"] + outcomes[f"v{version}"]
    apart = outcomes[UNREACHABLE] + (outcomes[CUT] if during is not None else 0)
    return {"rollout_switch_s": switch_s, "requests": total, "failed": total - answered - apart,
            "unreachable": outcomes[UNREACHABLE], "cut": outcomes[CUT],
            "outcomes": dict(outcomes), **extra}


def report(figures: dict[str, Any]) -> str:
    """The markdown section for docs/performance.md."""
    crash = figures["crash"]
    return "\n".join([
        SECTION, "",
        "`make bench` (`.venv/bin/python bench/controller_rollout.py`): a real `greenbutton up`,",
        "local target, scikit-learn ElasticNet on the diabetes data, loopback HTTP.", "",
        "| figure | measured | target |", "|---|---|---|",
        f"| button → endpoint ready (promotion sent, gates included → first prediction by "
        f"that version; median of 5: first deployment + 4 swaps) "
        f"| {figures['button_to_ready_s']:.2f} s "
        f"({', '.join(f'{b:.2f}' for b in figures['buttons_s'])}) | < 5 s |",
        f"| failed requests during a v5 → v6 rollout, {figures['clients']} concurrent clients "
        f"| {figures['failed']} of {figures['requests']} | 0 |",
        f"| rollout: promotion accepted → first answer from v6 "
        f"| {figures['rollout_switch_s']:.2f} s | — |",
        f"| failed requests during a v6 → v7 rollout with `kill -9` of `greenbutton up` while "
        f"v7 starts, then a restart, {figures['clients']} clients "
        f"| {crash['failed']} of {crash['requests']} (apart: {crash['cut']} in flight when "
        f"`up` died, {crash['unreachable']} refused while no control plane listened, "
        f"{crash['down_s']:.1f} s) | 0 |",
        "", f"Outcomes: {figures['outcomes']}; with the crash: {crash['outcomes']}.", "", "",
    ])


def write_section(path: Path, section: str) -> None:
    """Replace this bench's section in ``path`` (or append it), leaving others untouched."""
    text = path.read_text() if path.exists() else "# Performance\n\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    """Run, print, optionally write the section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    section = report(run(args.clients))
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
