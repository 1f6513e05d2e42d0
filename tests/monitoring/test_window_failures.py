"""A payload store that cannot be written (its disk full) is reported once, not with a
traceback every interval from every worker, and its recovery is said."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from greenbutton.errors import NotReady
from greenbutton.monitoring.gauges import MonitoringGauges
from greenbutton.monitoring.monitors import Monitors
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.window import DriftWindow

TICKS = 5


async def test_a_full_store_is_reported_once_and_its_recovery_said(
        digits_monitors: Monitors, payload_store: PayloadStore,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    window = DriftWindow(digits_monitors, MonitoringGauges(CollectorRegistry()), model="digits",
                         version="1", size=100, interval_s=10, alpha=0.01,
                         store=payload_store)
    claim = payload_store.coordination.claim_drift_test

    def full(*args: object, **kwargs: object) -> bool:
        raise NotReady("store unavailable: database or disk is full")

    monkeypatch.setattr(payload_store.coordination, "claim_drift_test", full)
    with caplog.at_level(logging.DEBUG, logger="greenbutton.monitoring.window"):
        for _ in range(TICKS):
            await window.tick()
    failures = [r for r in caplog.records if "claiming the drift test" in r.getMessage()]
    assert len(failures) == TICKS  # every failure is logged...
    assert [r.exc_info is not None for r in failures] == [True] + [False] * (TICKS - 1)
    assert [r.levelno >= logging.WARNING for r in failures] == [True] + [False] * (TICKS - 1)
    caplog.clear()  # ...with its traceback once, the repeats quietly
    monkeypatch.setattr(payload_store.coordination, "claim_drift_test", claim)
    with caplog.at_level(logging.INFO, logger="greenbutton.monitoring.window"):
        await window.tick()
    assert [r.getMessage() for r in caplog.records] == [
        f"claiming the drift test works again (after {TICKS} failures)"]
