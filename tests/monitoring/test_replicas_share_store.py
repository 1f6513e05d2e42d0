"""Two serving replicas on one PostgreSQL payload store (the generated manifests' setup):
feedback on a prediction one replica answered is accepted by the other, and both test drift
on one window of every replica's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane
from greenbutton.dataplane.loading import ServedModel
from greenbutton.dataplane.metrics import Metrics
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.runtime import MonitoringRuntime


@asynccontextmanager
async def replica(settings: Settings, model: ServedModel, uri: str
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """One replica: its own engine on the shared store, runtime, data plane and app."""
    store = PayloadStore(uri)
    runtime = MonitoringRuntime(settings.monitoring, store)
    plane = DataPlane(settings.serving, Metrics(), model)
    hooks = runtime.hooks(model, plane.metrics)
    plane.add_hooks(hooks.annotators, hooks.sinks)
    await plane.warm_up()
    app = create_app(settings, plane, extra_routes=runtime.routes())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1") as client:
            yield client
    finally:
        await plane.aclose()
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("own_store_uri", ["postgres"], indirect=True)
async def test_replicas_take_each_others_feedback_and_share_one_window(
    settings: Settings, monitored_model: ServedModel, own_store_uri: str, digits_split: Any
) -> None:
    test_rows, test_labels = digits_split[2], digits_split[3]
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(replica(settings, monitored_model, own_store_uri))
        b = await stack.enter_async_context(replica(settings, monitored_model, own_store_uri))
        for start in range(0, 100, 10):  # all answered by replica a
            rows = (16 - test_rows[start:start + 10]).to_dict(orient="records")
            answer = await a.post("/predict", json={"inputs": rows},
                                  headers={"X-Request-ID": f"req-{start}"})
            assert answer.status_code == 200, answer.text
        feedback = await b.post("/feedback", json={  # to replica b: waits for a's flush
            "request_id": "req-0", "truth": test_labels[:10].tolist()})
        assert feedback.status_code == 201, feedback.text
        mine = (await a.get("/monitoring", params={"refresh": "1"})).json()
        theirs = (await b.get("/monitoring", params={"refresh": "1"})).json()
    assert mine["window"]["rows"] == theirs["window"]["rows"] == 100
    assert mine["drift"]["overall"]["is_drift"] is theirs["drift"]["overall"]["is_drift"] is True
