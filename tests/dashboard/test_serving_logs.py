"""The tail of each local serving process's log, found through the local target's records."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from greenbutton.config import Settings
from greenbutton.controller.targets.local_records import InstanceRecord, save_records
from greenbutton.controlplane.dashboard.serving_logs import MAX_BYTES, ServingLogs


def _record(settings: Settings, name: str, version: int, log: Path) -> InstanceRecord:
    return InstanceRecord(name=name, model=name, version=version, port=40000 + version,
                          instance_id=f"id-{version}", log=str(log))


def _settings(tmp_path: Path, target: str = "local://") -> Settings:
    return Settings(home=tmp_path / "gb", controller={"target_uri": target},  # type: ignore[arg-type]
                    _env_file=None)


def test_tail_returns_last_lines_newest_version_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    logs = settings.home / "logs"
    logs.mkdir(parents=True)
    (logs / "wine-v1.log").write_text("".join(f"v1 line {i}\n" for i in range(300)))
    (logs / "wine-v2.log").write_text("Application startup complete.\n")
    (logs / "other-v1.log").write_text("not wine\n")
    save_records(settings.home / "run" / "local-target.json", [
        _record(settings, "wine", 1, logs / "wine-v1.log"),
        _record(settings, "wine", 2, logs / "wine-v2.log"),
        _record(settings, "other", 1, logs / "other-v1.log"),
    ])
    found = ServingLogs(settings).tail("wine", max_lines=5)
    assert found is not None
    assert [(b.version, b.lines[-1]) for b in found] == [
        (2, "Application startup complete."), (1, "v1 line 299")]
    assert found[1].lines == [f"v1 line {i}" for i in range(295, 300)]


def test_tail_reads_only_the_end_of_a_large_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    log = settings.home / "logs" / "big-v1.log"
    log.parent.mkdir(parents=True)
    log.write_text("x" * (3 * MAX_BYTES) + "\nlast\n")
    save_records(settings.home / "run" / "local-target.json",
                 [_record(settings, "big", 1, log)])
    found = ServingLogs(settings).tail("big")
    assert found is not None and found[0].lines == ["last"]


def test_tail_refuses_a_log_outside_the_home(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("do not show\n")
    escaping = settings.home / "logs" / ".." / ".." / "secret.txt"
    save_records(settings.home / "run" / "local-target.json",
                 [_record(settings, "wine", 1, escaping)])
    found = ServingLogs(settings).tail("wine")
    assert found is not None and asdict(found[0])["lines"] == []


def test_tail_of_another_target_is_none(tmp_path: Path) -> None:
    settings = _settings(tmp_path, target="kubernetes://ctx/ns")
    assert ServingLogs(settings).tail("wine") is None
