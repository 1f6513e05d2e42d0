"""The green button in a real browser: Debian's headless Chromium driven by Playwright.

A real `greenbutton up`, a logged model, and a person's path through the dashboard: find the
model, press Deploy, watch the deployment become ready, send traffic, see the chart and its
table update. Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import greenbutton

from .conftest import Platform

pytestmark = pytest.mark.slow

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (the system's, not a downloaded build)."""
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: run `make test-deps`")
    with playwright_sync.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _log_digits(platform: Platform) -> pd.DataFrame:
    class Digits(greenbutton.Model):
        def __init__(self, clf: Any) -> None:
            self.clf = clf

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.clf.predict(model_input)

    X, y = load_digits(return_X_y=True, as_frame=True)
    X.columns = [f"pixel_{i}" for i in range(64)]
    clf = LogisticRegression(C=0.5, max_iter=200).fit(X, y)
    greenbutton.log_model(Digits(clf), "digits", reference_data=X, settings=platform.settings,
                          params={"C": 0.5}, pip_requirements=["scikit-learn", "pandas"])
    return X


def _send_traffic(url: str, X: pd.DataFrame, count: int) -> None:
    body = {"inputs": X.head(4).to_dict(orient="records")}
    with httpx.Client(timeout=30) as http:
        for _ in range(count):
            assert http.post(url, json=body).status_code == 200


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url + "/")
    playwright_sync.expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    playwright_sync.expect(page.get_by_role("heading", name="Models")).to_be_visible()


def _viewer_token(platform: Platform, admin: str) -> str:
    auth = {"authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=platform.url, headers=auth, timeout=10) as http:
        created = http.post("/api/v1/principals", json={"name": "victor", "role": "viewer"})
        assert created.status_code == 201, created.text
        issued = http.post("/api/v1/tokens", json={"principal": "victor"})
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


def test_press_the_green_button_then_watch_traffic(platform: Platform, browser: Any) -> None:
    X = _log_digits(platform)
    admin = (platform.settings.home / "admin.token").read_text().strip()
    expect = playwright_sync.expect
    page = browser.new_page(viewport=DESKTOP)
    _sign_in(page, platform.url, admin)
    page.get_by_role("link", name="digits").click()
    expect(page.get_by_role("heading", name="digits", level=1)).to_be_visible()
    expect(page.get_by_text("C", exact=True)).to_be_visible()  # the MLflow run's params
    page.keyboard.press("Tab")  # keyboard: the skip link first, then on to the green button
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("Reason").focus()
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Deploy v1":
            break
    assert page.evaluate("document.activeElement.textContent") == "Deploy v1"
    page.keyboard.press("Enter")  # the green button: propose → gates → approve → deploy
    deployed = page.locator("tr[data-version='1'] .stage-production")
    blocked = page.get_by_role("button", name="Override #1")
    expect(deployed.or_(blocked)).to_be_visible(timeout=60_000)
    if blocked.is_visible():
        # A gate blocked it (see the Gates column): the admin overrides, with a reason, as
        # governance allows; the override is audited.
        _shot(page, "model-blocked")
        page.get_by_label("Reason").fill("e2e: override a blocked gate")
        blocked.click()
        expect(deployed).to_be_visible(timeout=30_000)
    _shot(page, "model-detail")

    page.get_by_role("link", name="digits", exact=True).last.click()
    expect(page.locator("[data-deployment-state='digits']")).to_have_text("ready",
                                                                        timeout=90_000)
    _send_traffic(f"{platform.url}/endpoints/digits/predict", X, count=40)
    first_row = page.locator("[data-live-table] tbody tr").first
    expect(first_row.locator("td").nth(1)).to_have_text("v1", timeout=15_000)
    totals = page.locator("[data-live-totals] tbody tr").first
    expect(totals).to_contain_text("40")
    _send_traffic(f"{platform.url}/endpoints/digits/predict", X, count=60)
    expect(totals).to_contain_text("100", timeout=15_000)
    assert page.locator("[data-chart='rps'] svg path.line").count() >= 1
    assert page.locator("[data-chart='latency'] svg path.line").count() >= 2
    _shot(page, "deployment-traffic")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # let the layout settle before the phone-width screenshot
    _shot(page, "deployment-phone")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.close()

    viewer = browser.new_page(viewport=DESKTOP)
    _sign_in(viewer, platform.url, _viewer_token(platform, admin))
    viewer.goto(platform.url + "/models/digits")
    expect(viewer.get_by_role("button", name="Archive v1")).to_be_disabled()
    status = viewer.evaluate("""async () => (await fetch(
        "/api/v1/models/digits/versions/1/transitions",
        {method: "POST", headers: {"Content-Type": "application/json"},
         body: JSON.stringify({stage: "Archived", actor: "victor"})})).status""")
    assert status == 403  # refused server-side, not only hidden
    _shot(viewer, "viewer-refused")
    viewer.goto(platform.url + "/audit")
    expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()
    viewer.close()
