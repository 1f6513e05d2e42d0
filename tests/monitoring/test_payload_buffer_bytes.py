"""A payload store that cannot write (a full disk) costs the serving worker a bounded number
of bytes: the payload buffer drops and counts what does not fit, and says how full it is."""

from __future__ import annotations

import asyncio
import errno
import gc
import tracemalloc
from collections.abc import Sequence

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from greenbutton.config import Settings
from greenbutton.dataplane.hooks import PredictionRecord, utc_now
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.payload_log import PayloadLog
from greenbutton.monitoring.payload_store import PayloadStore, PreparedBatch

MAX_BYTES = 8 * 1024 * 1024
ROWS, COLUMNS = 2000, 64  # one request: 1 MiB of float64 inputs
RECORD_BYTES = ROWS * COLUMNS * 8


class FullDiskStore(PayloadStore):
    """A payload store on a full disk: every write fails as SQLite's would."""

    failed_writes = 0

    def write_prepared(self, prepared: Sequence[PreparedBatch]) -> None:
        self.failed_writes += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def large_record(i: int) -> PredictionRecord:
    values = np.random.default_rng(i).random((ROWS, COLUMNS))
    return PredictionRecord(
        request_id=f"r{i}", model_name="wine", model_version="2", endpoint="/predict",
        inputs=pd.DataFrame(values, columns=[f"f{c}" for c in range(COLUMNS)]),
        predictions=np.zeros(ROWS), annotations={}, latency_s=0.01, received_at=utc_now())


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def test_failing_store_keeps_buffer_under_its_byte_bound(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    store = FullDiskStore(settings.monitoring.payload_store_uri)
    registry = CollectorRegistry()
    log = PayloadLog(store, MonitoringGauges(registry), capacity=10_000, flush_interval_s=0.01,
                     max_bytes=MAX_BYTES)
    requests = 60
    gc.collect()
    tracemalloc.start()
    try:
        held = []
        for i in range(requests):
            log.submit(large_record(i))
            held.append(log.held_bytes)
            await asyncio.sleep(0.002)  # the flusher runs (and fails) between requests
        gc.collect()
        kept_bytes, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.failed_writes > 0
    # the bound, plus the JSON copy of the one record being written (2.5 MiB here)
    slack = 3 * RECORD_BYTES
    assert max(held) <= MAX_BYTES + slack
    assert kept_bytes < MAX_BYTES + slack + 2 * 1024 * 1024  # what the worker really holds
    dropped = _sample(registry, "greenbutton_payload_dropped_total", model="wine", version="2")
    assert dropped >= requests - MAX_BYTES // RECORD_BYTES
    assert _sample(registry, "greenbutton_payload_buffer_bytes") == log.held_bytes
    assert _sample(registry, "greenbutton_payload_buffer_max_bytes") == MAX_BYTES
    store.close()


async def test_first_large_record_over_the_bound_is_dropped_and_counted(
    settings: Settings,
) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    store = PayloadStore(settings.monitoring.payload_store_uri)
    registry = CollectorRegistry()
    log = PayloadLog(store, MonitoringGauges(registry), capacity=10_000, flush_interval_s=60,
                     max_bytes=512 * 1024)
    log.submit(large_record(0))  # 1 MiB > the whole bound
    assert not log.pending("r0")
    assert _sample(registry, "greenbutton_payload_dropped_total", model="wine", version="2") == 1
    assert log.held_bytes == 0
    await log.aclose()
    store.close()
