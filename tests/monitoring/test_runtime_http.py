"""The serving app with monitoring plugged in: outlier flags, feedback, /monitoring, gauges."""

from __future__ import annotations

from typing import Any

import numpy as np


def rows_of(frame: Any) -> list[dict[str, float]]:
    return frame.to_dict(orient="records")  # type: ignore[no-any-return]


WHITE = {f"pixel_{i}": 16.0 for i in range(64)}


def second_worker(settings: Any, model: Any, store: Any) -> tuple[Any, Any]:
    """Another worker of the same server: its own monitoring runtime and data plane, the same
    payload store; (runtime, plane), the plane to be closed by the caller."""
    from greenbutton.dataplane.core import DataPlane
    from greenbutton.dataplane.metrics import Metrics
    from greenbutton.monitoring.runtime import MonitoringRuntime

    runtime = MonitoringRuntime(settings.monitoring, store)
    plane = DataPlane(settings.serving, Metrics(), model)
    hooks = runtime.hooks(model, plane.metrics)
    plane.add_hooks(hooks.annotators, hooks.sinks)
    return runtime, plane


def count_tests(window: Any, counts: list[int], slot: int) -> None:
    """Count ``window``'s drift tests in ``counts[slot]``."""
    test = window._test

    def counted(tested: Any) -> Any:
        counts[slot] += 1
        return test(tested)

    window._test = counted


async def predict(client: Any, rows: list[dict[str, float]], request_id: str) -> Any:
    response = await client.post("/predict", json={"inputs": rows},
                                 headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    return response.json()


async def test_predict_carries_outlier_flag_and_score_per_row(monitored_app: Any,
                                                             digits_split: Any) -> None:
    client, _, _ = monitored_app
    body = await predict(client, [*rows_of(digits_split[2][:2]), WHITE], "r-outliers")
    assert [o["is_outlier"] for o in body["outliers"]] == [False, False, True]
    assert all(isinstance(o["score"], float) for o in body["outliers"])


async def test_feedback_truth_stored_then_duplicate_conflicts(monitored_app: Any,
                                                              digits_split: Any) -> None:
    client, _, plane = monitored_app
    body = await predict(client, rows_of(digits_split[2][:1]), "r-fb")
    truth = int(digits_split[3][0])
    first = await client.post("/feedback", json={"request_id": "r-fb", "truth": truth})
    assert first.status_code == 201
    assert first.json()["reward"] == (1.0 if body["predictions"][0] == truth else -1.0)
    again = await client.post("/feedback", json={"request_id": "r-fb", "truth": truth})
    assert again.status_code == 409
    replaced = await client.post("/feedback",
                                 json={"request_id": "r-fb", "reward": 0.5, "replace": True})
    assert replaced.status_code == 201
    value = plane.metrics.registry.get_sample_value
    assert value("greenbutton_feedback_mean_reward", {"model": "model", "version": ""}) == 0.5


async def test_feedback_unknown_request_id_not_found(monitored_app: Any) -> None:
    client, _, _ = monitored_app
    response = await client.post("/feedback", json={"request_id": "never-seen", "truth": 3})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "feedback_not_found"


async def test_feedback_without_truth_or_reward_refused(monitored_app: Any) -> None:
    client, _, _ = monitored_app
    response = await client.post("/feedback", json={"request_id": "x"})
    assert response.status_code == 422


async def test_feedback_accuracy_per_version_published(monitored_app: Any,
                                                       digits_split: Any) -> None:
    client, _, plane = monitored_app
    test_rows, truths = digits_split[2], digits_split[3]
    for i in range(4):
        await predict(client, rows_of(test_rows[i:i + 1]), f"acc-{i}")
        await client.post("/feedback", json={"request_id": f"acc-{i}", "truth": int(truths[i])})
    accuracy = plane.metrics.registry.get_sample_value(
        "greenbutton_feedback_accuracy", {"model": "model", "version": ""})
    assert accuracy is not None and 0.5 <= accuracy <= 1.0


async def test_feedback_scores_every_row_of_a_request(monitored_app: Any,
                                                      digits_split: Any) -> None:
    client, _, plane = monitored_app
    rows = digits_split[2][:4]
    body = await predict(client, rows_of(rows), "four-rows")
    truths = list(body["predictions"])
    truths[0] = (truths[0] + 1) % 10  # one of four wrong
    response = await client.post("/feedback", json={"request_id": "four-rows",
                                                     "truth": truths})
    assert response.json()["accuracy"] == 0.75
    accuracy = plane.metrics.registry.get_sample_value(
        "greenbutton_feedback_accuracy", {"model": "model", "version": ""})
    assert accuracy == 0.75  # three rows right, not "the request was wrong"


async def test_relabelled_feedback_flags_labels_performance_and_overall(
        held_out_app: Any, digits_split: Any) -> None:
    client, _, _ = held_out_app
    rows = digits_split[2][200:300]  # after the 200 held-out rows
    for start in range(0, 100, 25):
        await predict(client, rows_of(rows[start:start + 25]), f"fb-{start}")
        await client.post("/feedback", json={"request_id": f"fb-{start}", "truth": [3] * 25})
    body = (await client.get("/monitoring", params={"refresh": "1"})).json()
    drift = body["drift"]
    assert drift["labels"]["is_drift"] and drift["performance"]["is_drift"]
    assert drift["overall"]["is_drift"]
    performance = body["performance"]
    assert performance["rows"] == 100 and performance["measure"] == "accuracy"
    assert performance["recent"] < 0.2 < 0.9 < performance["held_out"]
    assert 0.8 < performance["estimated"]["accuracy"] <= 1.0  # the inputs are clean
    metrics = (await client.get("/metrics")).text
    assert 'greenbutton_performance{measure="accuracy",model="model",source="estimated"' in \
        metrics


async def test_monitoring_reports_drift_for_inverted_traffic(monitored_app: Any,
                                                             digits_split: Any) -> None:
    client, _, plane = monitored_app
    inverted = 16 - digits_split[2][:100]
    await predict(client, rows_of(inverted), "inverted-batch")
    body = (await client.get("/monitoring", params={"refresh": "1"})).json()
    assert body["drift"]["overall"]["is_drift"] is True
    assert body["window"]["rows"] == 100
    metrics = (await client.get("/metrics")).text
    assert 'greenbutton_drift_detected{detector="overall",feature="",model="model",version=""}' \
        ' 1.0' in metrics


async def test_monitoring_clean_traffic_not_drifted(monitored_app: Any, digits_split: Any) -> None:
    client, _, _ = monitored_app
    await predict(client, rows_of(digits_split[2][:100]), "clean-batch")
    body = (await client.get("/monitoring", params={"refresh": "1"})).json()
    assert body["drift"]["overall"]["is_drift"] is False
    assert np.isclose(body["outlier_rate"], 0.0, atol=0.05)


async def test_invocations_rows_scored_for_outliers_in_the_payload_log(
        monitored_app: Any, digits_split: Any, payload_store: Any) -> None:
    client, runtime, plane = monitored_app
    rows = [*rows_of(digits_split[2][:2]), WHITE]
    for i in range(3):  # several requests: scored together at flush
        response = await client.post("/invocations", json={"dataframe_records": rows},
                                     headers={"X-Request-ID": f"inv-{i}"})
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"predictions"}  # MLflow's shape, unchanged
    await runtime.payload_log.flush()
    logged = payload_store.find_prediction("inv-2")
    assert logged is not None
    assert [o["is_outlier"] for o in logged.annotations["outliers"]] == [False, False, True]
    flagged = plane.metrics.registry.get_sample_value(
        "greenbutton_outlier_rows_total", {"model": "model", "version": ""})
    assert flagged == 3  # one white row per request, counted once


async def test_every_worker_tests_the_rows_all_workers_logged(
    monitored_app: Any, settings: Any, monitored_model: Any, payload_store: Any,
    digits_split: Any
) -> None:
    client, runtime, _ = monitored_app
    sibling, plane = second_worker(settings, monitored_model, payload_store)
    try:
        assert sibling.window is not None
        assert (await sibling.window.test_now())["drift"] is None  # nothing logged yet
        for start in range(0, 100, 10):  # served (and logged) by the first worker only
            await predict(client, rows_of(16 - digits_split[2][start:start + 10]), f"w{start}")
        mine = (await client.get("/monitoring", params={"refresh": "1"})).json()
        theirs = await sibling.window.test_now()
        assert mine["window"]["rows"] == theirs["window"]["rows"] == 100
        assert theirs["drift"]["overall"]["is_drift"] is True
        assert theirs["drift"] == mine["drift"]
        assert await sibling.window.test_now() is theirs  # no new rows: not tested again
    finally:
        await plane.aclose()


async def test_one_worker_tests_each_interval_and_the_other_publishes_its_result(
    monitored_app: Any, settings: Any, monitored_model: Any, payload_store: Any,
    digits_split: Any
) -> None:
    client, runtime, _ = monitored_app
    sibling, plane = second_worker(settings, monitored_model, payload_store)
    windows = [runtime.window, sibling.window]
    tests = [0, 0]
    for i, window in enumerate(windows):
        count_tests(window, tests, i)
    try:
        await predict(client, rows_of(16 - digits_split[2][:100]), "turns")
        await runtime.payload_log.flush()
        first = await windows[0].tick()
        # rows logged since: the other worker would test them, but the turn is taken
        await predict(client, rows_of(16 - digits_split[2][100:110]), "turns-later")
        await runtime.payload_log.flush()
        second = await windows[1].tick()  # within the interval: publishes the stored test
        assert tests == [1, 0]
        assert second["drift"] == first["drift"] and first["drift"]["overall"]["is_drift"]
        assert second["window"]["rows"] == 100
        labels = {"model": "model", "version": "", "detector": "overall", "feature": ""}
        gauge = "greenbutton_drift_p_value"
        values = [w.gauges.drift_registry.get_sample_value(gauge, labels) for w in windows]
        assert values[0] == values[1] == first["drift"]["overall"]["p_value"]
        assert await windows[1].tick() is second  # nothing new stored: nothing to publish
        assert tests == [1, 0]
    finally:
        await plane.aclose()


async def test_a_worker_that_cannot_claim_its_turn_tests_by_itself(
    monitored_app: Any, payload_store: Any, digits_split: Any, monkeypatch: Any
) -> None:
    client, runtime, _ = monitored_app

    def unreachable(*args: Any, **kwargs: Any) -> bool:
        raise OSError("the store is down")

    await predict(client, rows_of(16 - digits_split[2][:100]), "no-turn")
    await runtime.payload_log.flush()
    monkeypatch.setattr(payload_store.coordination, "claim_drift_test", unreachable)
    snapshot = await runtime.window.tick()
    assert snapshot["window"]["rows"] == 100 and snapshot["drift"]["overall"]["is_drift"]
