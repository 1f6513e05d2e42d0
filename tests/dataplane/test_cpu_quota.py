"""Workers and native threads follow the container's CPU limit, not the node's cores."""

from __future__ import annotations

from pathlib import Path

from greenbutton.config import ServingSettings
from greenbutton.dataplane.cpu_quota import cpu_limit
from greenbutton.dataplane.threads import available_cores, native_threads, worker_count


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cgroup_v2_cpu_max_is_the_limit(tmp_path: Path) -> None:
    proc = _write(tmp_path / "proc", "0::/\n")
    _write(tmp_path / "cg" / "cpu.max", "250000 100000\n")
    assert cpu_limit(tmp_path / "cg", proc) == 2.5


def test_cgroup_v2_max_means_no_limit(tmp_path: Path) -> None:
    proc = _write(tmp_path / "proc", "0::/\n")
    _write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    assert cpu_limit(tmp_path / "cg", proc) is None


def test_cgroup_v2_parent_limit_applies_to_child(tmp_path: Path) -> None:
    proc = _write(tmp_path / "proc", "0::/kubepods/pod1/ctr\n")
    _write(tmp_path / "cg" / "kubepods" / "pod1" / "cpu.max", "100000 100000\n")
    _write(tmp_path / "cg" / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    assert cpu_limit(tmp_path / "cg", proc) == 1.0


def test_cgroup_v1_quota_and_period(tmp_path: Path) -> None:
    proc = _write(tmp_path / "proc", "4:memory:/x\n2:cpu,cpuacct:/kubepods/pod1\n0::/\n")
    folder = tmp_path / "cg" / "cpu,cpuacct"  # a container's own cgroup at the mount root
    _write(folder / "cpu.cfs_quota_us", "300000\n")
    _write(folder / "cpu.cfs_period_us", "100000\n")
    assert cpu_limit(tmp_path / "cg", proc) == 3.0
    _write(folder / "cpu.cfs_quota_us", "-1\n")
    assert cpu_limit(tmp_path / "cg", proc) is None


def test_no_cgroup_file_system_means_unknown(tmp_path: Path) -> None:
    assert cpu_limit(tmp_path / "cg", tmp_path / "absent") is None


def test_workers_and_threads_follow_the_limit() -> None:
    cores = available_cores()
    assert available_cores(limit=1.5) == 1
    assert available_cores(limit=0.25) == 1
    assert available_cores(limit=float(cores + 8)) == cores
    assert worker_count(ServingSettings(workers=3)) == 3
    assert native_threads(ServingSettings(workers=1)) == cores
