"""``greenbutton promote`` follows the rollout: progress lines, the URL, or the failure."""

from __future__ import annotations

from typing import Any

import httpx

from greenbutton.cli.promote import follow_rollout
from greenbutton.client import ControlPlaneClient

URL = "http://127.0.0.1:8600/endpoints/digits/"


def deployment(state: str, summary: str, traffic: list[tuple[int, int]],
               **extra: Any) -> dict[str, Any]:
    return {"name": "digits", "model": "digits", "version": 2, "state": state, "url": URL,
            "summary": summary, "traffic": [{"version": v, "weight": w, "mirror_percent": 0}
                                            for v, w in traffic], **extra}


def client_seeing(*answers: dict[str, Any]) -> ControlPlaneClient:
    """A client whose n-th ``GET /api/v1/deployments`` sees ``answers[n]`` (then the last)."""
    seen = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        answer = seen.pop(0) if len(seen) > 1 else seen[0]
        return httpx.Response(200, json={"deployments": [answer]})

    return ControlPlaneClient("http://cp", transport=httpx.MockTransport(handle))


def test_follow_rollout_reports_each_step_then_the_url() -> None:
    lines: list[str] = []
    client = client_seeing(
        deployment("starting", "rolling out (v1 -> v2, 0 %): 0/1 ready", [(1, 100)]),
        deployment("starting", "rolling out (v1 -> v2, 0 %): 0/1 ready", [(1, 100)]),
        deployment("ready", "ready", [(2, 100)]))
    assert follow_rollout(client, "digits", 2, lines.append) == 0
    assert lines == ["digits: rolling out (v1 -> v2, 0 %): 0/1 ready", "digits: ready",
                     f"ready: {URL}"]


def test_follow_rollout_stops_on_a_crash_loop_with_exit_1() -> None:
    lines: list[str] = []
    loop = deployment("starting", "crash loop: v2 failed 2 times in a row (1 restarts): boom",
                      [(1, 100)], is_crash_looping=True)
    assert follow_rollout(client_seeing(loop), "digits", 2, lines.append) == 1
    assert lines[0].startswith("digits: crash loop: v2")
