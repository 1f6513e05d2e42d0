"""``greenbutton monitoring-config`` with no arguments: a Prometheus config over the
controller's targets file, alert rules, and a Grafana dashboard that declares its input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from greenbutton.cli.main import main
from greenbutton.monitoring.prometheus import grafana_dashboard


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("GREENBUTTON_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_no_arguments_scrapes_the_controllers_targets_file(home: Path) -> None:
    assert main(["monitoring-config"]) == 0
    folder = home / "prometheus"
    config = json.loads((folder / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["file_sd_configs"] == [{"files": ["targets.json"], "refresh_interval": "5s"}]
    assert job["honor_labels"] is True
    assert (folder / "greenbutton_rules.yml").is_file()
    dashboard = json.loads((folder / "grafana-greenbutton.json").read_text())
    assert dashboard["templating"]["list"][0]["name"] == "route"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_generated_config_passes_promtool(home: Path) -> None:
    assert main(["monitoring-config", "--target", "wine=127.0.0.1:8700"]) == 0
    folder = home / "prometheus"
    (folder / "targets.json").write_text("[]")  # the controller writes it once running
    done = subprocess.run(["promtool", "check", "config", str(folder / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("route", [None, "wine"])
def test_dashboard_declares_the_datasource_it_uses(route: str | None) -> None:
    dashboard = grafana_dashboard(route)
    declared = {f"${{{i['name']}}}" for i in dashboard["__inputs"] if i["type"] == "datasource"}
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"]}
    assert used == declared == {"${DS_PROMETHEUS}"}


def test_token_file_authorizes_every_job(home: Path, tmp_path: Path) -> None:
    token = tmp_path / "prometheus.token"
    token.write_text("gb_secret")
    assert main(["monitoring-config", "--target", "wine=127.0.0.1:8700",
                 "--token-file", str(token)]) == 0
    config = json.loads((home / "prometheus" / "prometheus.yml").read_text())
    assert [job["authorization"] for job in config["scrape_configs"]] == [
        {"credentials_file": str(token)}] * 2
