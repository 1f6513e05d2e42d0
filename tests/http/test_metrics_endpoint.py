"""GET /metrics after predictions: requests and latency by model and version."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROW = [[0.0] * 64]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_and_latency_by_model_version(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/predict", json={"inputs": ROW})
    await client.post("/predict", json={"inputs": ROW})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    labels = {"model": "digits", "version": "1", "endpoint": "/predict"}
    requests = frozenset({**labels, "status": "200"}.items())
    assert found[("greenbutton_requests_total", requests)] == 2
    assert found[("greenbutton_request_latency_seconds_count", frozenset(labels.items()))] == 2


async def test_metrics_count_refused_requests_by_error_type(client: httpx.AsyncClient) -> None:
    await client.post("/invocations", content=b"x", headers={"content-type": "application/pickle"})
    found = samples((await client.get("/metrics")).text)
    labels = {"model": "digits", "version": "1", "endpoint": "/invocations"}
    errors = frozenset({**labels, "type": "unsupported_media_type"}.items())
    assert found[("greenbutton_errors_total", errors)] == 1
    assert found[("greenbutton_requests_total", frozenset({**labels, "status": "415"}.items()))]


async def test_metrics_leave_out_health_checks(client: httpx.AsyncClient) -> None:
    await client.get("/health/live")
    assert 'endpoint="/health/live"' not in (await client.get("/metrics")).text
