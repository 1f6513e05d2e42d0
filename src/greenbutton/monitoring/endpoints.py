"""The routes monitoring adds to a serving process: ``POST /feedback`` (ground truth or a
reward for an earlier prediction, by request id) and ``GET /monitoring`` (the latest drift
window, outlier rate and live quality)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ..dataplane.encoding import read_json_body
from ..dataplane.hooks import RouteDoc, document
from ..dataplane.responses import json_response
from ..errors import ModelNotReady
from .feedback import Feedback

if TYPE_CHECKING:
    from .runtime import MonitoringRuntime

MAX_FEEDBACK_BYTES = 1024 * 1024


class FeedbackRequest(BaseModel):
    """The body: ``request_id`` and ``truth`` (value or one per row) and/or ``reward``."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    truth: Any = None
    reward: float | None = None
    replace: bool = False


def post_feedback(runtime: MonitoringRuntime) -> Callable[[Request], Awaitable[Response]]:
    """The ``/feedback`` endpoint bound to ``runtime``; 201 once the feedback is committed."""

    async def feedback(request: Request) -> Response:
        service = runtime.require_feedback()
        parsed = await read_json_body(request, FeedbackRequest, MAX_FEEDBACK_BYTES)
        result = await service.record(Feedback(parsed.request_id, parsed.truth, parsed.reward,
                                               parsed.replace))
        return json_response({"status": "stored", **result}, status_code=201)

    return document(feedback, RouteDoc("FeedbackRequest", FeedbackRequest.model_json_schema(),
                                       success_status=201))


def get_monitoring(runtime: MonitoringRuntime) -> Callable[[Request], Awaitable[Response]]:
    """The ``/monitoring`` endpoint bound to ``runtime``; ``?refresh=1`` writes this worker's
    buffered payload records and tests the window now."""

    async def monitoring(request: Request) -> Response:
        window = runtime.window
        if window is None:
            if runtime.feedback is None:
                raise ModelNotReady("the model is still loading")
            return json_response({"drift": None, "reason": "model logged without monitors"})
        if request.query_params.get("refresh") in ("1", "true"):
            return json_response(await window.test_now(refresh=True))
        return json_response(window.snapshot)

    return monitoring
