"""A shadow version's pods on Kubernetes get every request copied by the ingress
(``mirror-target`` has no percentage): with ``serving.mirror_percent`` set, the serving process
calls the model for that share of prediction requests only and answers the rest 204 at once."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from greenbutton.config import Settings
from greenbutton.dataplane.app import create_app
from greenbutton.dataplane.core import DataPlane

COPIES = 600


def mirrored(settings: Settings, percent: float | None) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(
        update={"mirror_percent": percent})})


async def send_copies(settings: Settings, dataplane: DataPlane,
                      body: dict[str, object]) -> tuple[dict[int, int], httpx.Response]:
    app = create_app(settings, dataplane)
    answers: dict[int, int] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        for _ in range(COPIES):
            status = (await client.post("/invocations", json=body)).status_code
            answers[status] = answers.get(status, 0) + 1
        health = await client.get("/health/ready")
    return answers, health


def model_calls(dataplane: DataPlane) -> float:
    value = dataplane.metrics.registry.get_sample_value(
        "greenbutton_prediction_rows_total",
        {"model": dataplane.name, "version": dataplane.version or ""})
    return value or 0.0


async def test_a_mirror_process_serves_only_its_share_of_copies(
        settings: Settings, dataplane: DataPlane, digits_frame: pd.DataFrame) -> None:
    body = {"dataframe_split": digits_frame.head(1).to_dict(orient="split")}
    answers, health = await send_copies(mirrored(settings, 10.0), dataplane, body)
    assert set(answers) == {200, 204} and health.status_code == 200
    # binomial(600, 0.1): mean 60, sd 7.3; outside 25..110 has odds below 1e-6
    assert 25 <= answers[200] <= 110, answers
    assert model_calls(dataplane) == answers[200]
    skipped = dataplane.metrics.registry.get_sample_value(
        "greenbutton_mirror_copies_skipped_total",
        {"model": dataplane.name, "version": dataplane.version or ""})
    assert skipped == answers[204]


async def test_without_the_setting_every_request_is_served(
        settings: Settings, dataplane: DataPlane, digits_frame: pd.DataFrame) -> None:
    body = {"dataframe_split": digits_frame.head(1).to_dict(orient="split")}
    answers, _ = await send_copies(settings, dataplane, body)
    assert answers == {200: COPIES}


@pytest.mark.parametrize("percent", [0, -5, 100.5])
def test_a_mirror_share_outside_0_to_100_is_refused(settings: Settings, percent: float) -> None:
    with pytest.raises(ValueError, match="mirror_percent"):
        Settings(serving={"mirror_percent": percent}, _env_file=None)  # type: ignore[arg-type,call-arg]


async def test_every_prediction_route_is_sampled_and_nothing_else(dataplane: DataPlane) -> None:
    """Drawn out every time: the prediction routes (V2 infer by its template) answer 204
    without reaching the app; health, metrics and GETs reach it."""
    from starlette.responses import PlainTextResponse

    from greenbutton.dataplane.app import PREDICTION_PATHS
    from greenbutton.dataplane.mirror import MirrorSample

    reached = PlainTextResponse("reached")
    app = MirrorSample(reached, percent=50, predictions=PREDICTION_PATHS,
                       metrics=dataplane.metrics, labels=lambda: ("digits", "1"),
                       draw=lambda: 0.99)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        for path in ("/predict", "/invocations", "/explain", "/v2/models/digits/infer",
                     "/v2/models/digits/versions/1/infer"):
            assert (await client.post(path, json={})).status_code == 204, path
        for path in ("/feedback", "/v2/models/digits", "/health/ready"):
            assert (await client.post(path, json={})).text == "reached", path
        assert (await client.get("/metrics")).text == "reached"
