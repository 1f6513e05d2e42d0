"""``/docs`` renders the OpenAPI 3.1 document in headless Chromium, from local files only."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from served_process import serving

from dashboard.browser import DESKTOP, chromium
from greenbutton.config import Settings

DIGITS_URI = "models:/digits/1"


def wait_ready(port: int, timeout_s: float = 60) -> None:
    """Until the serving process answers ready (its model loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not ready within {timeout_s} s")


@pytest.mark.slow
def test_docs_page_renders_every_operation_from_local_files(digits_store: Settings) -> None:
    with serving(digits_store, DIGITS_URI, workers=1) as (_, port), chromium() as browser:
        wait_ready(port)
        page = browser.new_page(viewport=DESKTOP)
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/docs")
        page.wait_for_selector('.opblock-summary-path[data-path="/predict"]', timeout=30_000)
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "nodes => nodes.map(n => n.dataset.path)")
        body: Any = page.inner_text("body")
        page.close()
    assert "Unable to render this definition" not in body
    assert {"/predict", "/invocations"} <= set(paths)
    assert hosts == {f"127.0.0.1:{port}"}  # no CDN
    assert errors == []
