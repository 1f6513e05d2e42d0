"""The CPU limit of this process's container, from its cgroup (Kubernetes ``limits.cpu``).

``os.cpu_count()`` and the affinity mask see every core of the node; a container limited to
two CPUs on a 64-core node that forks 64 workers gets throttled and holds 64 copies of the
model. The limit is the CFS quota: cgroup v2 ``cpu.max`` (``"200000 100000"``: 2 CPUs,
``"max 100000"``: none), cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none).
A cgroup's parents limit it too: the smallest quota on the way to the root counts. Usage::

    cpu_limit()                      # 2.0 in a pod with limits.cpu: 2, None without a limit
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs this process may use per period (its cgroup's CFS quota), None when unlimited
    or unknown (not Linux, no cgroup file system mounted)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = [limit for folder, reader in _folders(root, lines)
              for limit in [_limit_along(folder, root, reader)] if limit is not None]
    return min(limits, default=None)


def _folders(root: Path, lines: list[str]) -> Iterator[tuple[Path, str]]:
    """(cgroup folder, ``"v1"``/``"v2"``) of this process for each hierarchy with a CPU
    controller; a container's own cgroup is usually mounted at the root of each."""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            yield from ((f, "v2") for f in (root / relative, root / "unified" / relative, root))
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                yield root / mount / relative, "v1"
                yield root / mount, "v1"


def _limit_along(folder: Path, root: Path, version: str) -> float | None:
    """The smallest quota of ``folder`` and its parents below ``root``."""
    limits: list[float] = []
    while True:
        limit = _v2_limit(folder) if version == "v2" else _v1_limit(folder)
        if limit is not None:
            limits.append(limit)
        if folder == root or root not in folder.parents:
            return min(limits, default=None)
        folder = folder.parent


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        return None
    return None if quota == "max" else int(quota) / int(period or "100000")


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
