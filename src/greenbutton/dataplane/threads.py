"""How many threads the native math libraries of a serving worker may use.

Every worker runs on its own core; an OpenBLAS or OpenMP pool sized to the whole machine in
each of them oversubscribes the cores, and OpenBLAS threads busy-wait after each parallel call
(measured: a flush that scores a thousand rows at once left a pool thread spinning for ~25 µs
of CPU per request served). Capped with threadpoolctl, the library scikit-learn itself uses.
"""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

from ..config import ServingSettings
from .cpu_quota import cpu_limit


def worker_count(settings: ServingSettings) -> int:
    """Worker processes of one serving process (``workers``, or one per available core)."""
    return settings.workers or available_cores()


def available_cores(limit: float | None = None) -> int:
    """Cores this process may run on: its affinity mask, capped by its container's CPU
    limit (``limit``, default: read from the cgroup) rounded down, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cpu_limit() if limit is None else limit
    return cores if limit is None else max(1, min(cores, int(limit)))


def native_threads(settings: ServingSettings) -> int:
    """Threads per worker for the native pools: configured, or the cores shared by workers."""
    if settings.native_threads:
        return settings.native_threads
    return max(1, available_cores() // worker_count(settings))


def limit_native_threads(settings: ServingSettings) -> int:
    """Cap OpenBLAS/OpenMP pools of this process; the number of threads they may use."""
    threads = native_threads(settings)
    threadpool_limits(limits=threads)
    return threads
