"""One drift test per interval for a model version, shared through the payload store."""

from __future__ import annotations

import datetime
import math
import uuid

from greenbutton.monitoring.drift import DriftResult
from greenbutton.monitoring.payload_store import PayloadStore


def test_one_process_per_interval_claims_the_drift_test(
    any_store: PayloadStore, any_store_uri: str
) -> None:
    other = PayloadStore(any_store_uri)  # a second worker or replica: its own engine
    model = f"digits-{uuid.uuid4().hex[:8]}"  # (the shared PostgreSQL keeps other tests' rows)
    start = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
    later = start + datetime.timedelta(seconds=8)
    due = start + datetime.timedelta(seconds=9)
    try:
        assert any_store.coordination.claim_drift_test(model, "1", 9, now=start) is True
        assert other.coordination.claim_drift_test(model, "1", 9, now=later) is False
        assert other.coordination.claim_drift_test(model, "2", 9, now=later) is True  # own turns
        assert other.coordination.claim_drift_test(model, "1", 9, now=due) is True
        assert any_store.coordination.claim_drift_test(model, "1", 9, now=due) is False
        # the alert cooldowns are apart from the test turns
        assert any_store.coordination.claim_alert(model, "1", "drift", 9, now=start) is True
    finally:
        other.close()


def test_drift_snapshot_stored_by_one_process_read_by_another(
    any_store: PayloadStore, any_store_uri: str
) -> None:
    other = PayloadStore(any_store_uri)
    model = f"digits-{uuid.uuid4().hex[:8]}"
    try:
        assert other.coordination.drift_snapshot(model, None) is None
        # stored without a claim first (GET /monitoring?refresh=1), then after one
        any_store.coordination.save_drift_snapshot(model, None, 41, {"window": {"rows": 20}})
        assert other.coordination.drift_snapshot(model, None) == (41, {"window": {"rows": 20}})
        assert other.coordination.claim_drift_test(model, None, 9) is False  # saved: a turn
        any_store.coordination.save_drift_snapshot(model, None, 57, {"window": {"rows": 30}})
        assert other.coordination.drift_snapshot(model, None) == (57, {"window": {"rows": 30}})
        assert other.coordination.drift_snapshot(model, "1") is None
        other.coordination.claim_drift_test(model, "1", 9)  # claimed, untested: nothing to read
        assert any_store.coordination.drift_snapshot(model, "1") is None
    finally:
        other.close()


def test_drift_result_read_back_from_its_json() -> None:
    feature = DriftResult("features", 0.4, 1e-9, True)
    result = DriftResult("features", 0.4, 6.4e-8, True, {"pixel_3": feature,
                                                         "pixel_4": DriftResult(
                                                             "features", 0.1, 1.0, False)})
    assert DriftResult.from_json("features", result.to_json()) == result
    stored = {"statistic": None, "p_value": 1.0, "is_drift": False}  # NaN is stored as null
    assert math.isnan(DriftResult.from_json("labels", stored).statistic)
