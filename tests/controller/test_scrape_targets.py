"""The controller keeps a Prometheus file_sd targets file of its serving processes."""

from __future__ import annotations

import json
from pathlib import Path

from test_loop import V1, V2, RecordingTarget, digits

from greenbutton.config import Settings
from greenbutton.controller.loop import Controller
from greenbutton.controller.reconcile import (
    DeploymentSpec,
    InstanceState,
    ObservedDeployment,
    VersionRef,
)
from greenbutton.controller.routing.table import RouteTable
from greenbutton.controller.scrape_targets import ScrapeTargetFile, target_groups


def test_groups_label_each_process_and_skip_failed_and_unreachable() -> None:
    observed = [
        ObservedDeployment(VersionRef("wine", "wine-model", 3, replica=1), InstanceState.READY,
                           "http://127.0.0.1:41001"),
        ObservedDeployment(VersionRef("wine", "wine-model", 4), InstanceState.STARTING,
                           "http://[::1]:41002"),
        ObservedDeployment(VersionRef("wine", "wine-model", 5), InstanceState.FAILED,
                           "http://127.0.0.1:41003"),
        ObservedDeployment(VersionRef("wine", "wine-model", 6), InstanceState.READY, None),
    ]
    assert target_groups(observed) == [
        {"targets": ["127.0.0.1:41001"],
         "labels": {"model": "wine-model", "version": "3", "route": "wine", "replica": "1"}},
        {"targets": ["[::1]:41002"],
         "labels": {"model": "wine-model", "version": "4", "route": "wine", "replica": "0"}},
    ]


def test_file_is_rewritten_only_when_targets_change(tmp_path: Path) -> None:
    targets = ScrapeTargetFile(tmp_path / "prometheus" / "targets.json")
    ready = [ObservedDeployment(V1, InstanceState.READY, "http://127.0.0.1:40001")]
    assert targets.write(ready) is True
    assert targets.write(ready) is False
    assert targets.write([]) is True
    assert json.loads(targets.path.read_text()) == []
    assert targets.path.stat().st_mode & 0o777 == 0o644


async def test_controller_lists_processes_as_they_come_and_go(tmp_path: Path,
                                                             settings: Settings) -> None:
    target, desired = RecordingTarget(), [digits(1)]
    path = tmp_path / "targets.json"
    controller = Controller(lambda: list(desired), target, RouteTable(), settings,
                            scrape_targets=ScrapeTargetFile(path))

    def listed() -> list[tuple[str, str]]:
        return [(g["labels"]["version"], g["targets"][0]) for g in json.loads(path.read_text())]

    await controller.reconcile_once()  # starts v1
    target.make_ready(V1)
    await controller.reconcile_once()
    assert listed() == [("1", "127.0.0.1:40001")]
    desired[:] = [DeploymentSpec(name="digits", model="digits", version=2)]
    await controller.reconcile_once()  # starts v2 beside v1
    target.make_ready(V2)
    await controller.reconcile_once()
    assert ("2", "127.0.0.1:40002") in listed()
    for _ in range(5):  # traffic moves, v1 drains and stops
        await controller.reconcile_once()
        if len(listed()) == 1:
            break
    assert listed() == [("2", "127.0.0.1:40002")]
