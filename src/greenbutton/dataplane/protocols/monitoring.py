"""``GET /monitoring``: the latest drift window, outlier rate and live quality, as JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ...errors import ModelNotReady
from ..responses import json_response

if TYPE_CHECKING:
    from ...monitoring.runtime import MonitoringRuntime


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
