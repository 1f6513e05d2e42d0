"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
real ``greenbutton up`` serving the wine A/B scenario (two ElasticNet versions).

One platform for the module; each test is one page as a person uses it (deploy and watch the
rollout, split traffic 80/20, read quality and drift, the serving log, compare versions,
approve), asserting what is on the screen. Tests that need an earlier step make sure of it
through the API first, so each can fail on its own. Screenshots go to test-artifacts/dashboard/
and, when ``GREENBUTTON_SCREENSHOTS`` names a folder (``make screenshots``), the documented ones
are written there too (docs/img).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.linear_model import ElasticNet
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import greenbutton
from dashboard.browser import DESKTOP, PHONE, chromium
from greenbutton.config import Settings

from .conftest import free_port

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
MLFLOW_UI = "http://mlflow.example:5000"
API = "/api/v1"


def wine_model(pipeline: Any) -> greenbutton.Model:
    """An ElasticNet on 12 wine measurements predicting the 13th (alcohol, % vol); the class
    is local so that the logged model carries it (a serving process cannot import tests)."""

    class Wine(greenbutton.Model):
        def __init__(self, pipeline: Any) -> None:
            self.pipeline = pipeline

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.pipeline.predict(model_input)

    return Wine(pipeline)


@dataclass
class Team:
    """A running platform with wine v1 and v2 logged and four people's tokens."""

    settings: Settings
    url: str
    tokens: dict[str, str]
    X: pd.DataFrame
    y: pd.Series

    def api(self, who: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"authorization": f"Bearer {self.tokens[who]}"})

    @property
    def endpoint(self) -> str:
        return f"{self.url}/endpoints/wine/"


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"greenbutton up exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}{API}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"control plane not healthy in 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """``greenbutton up`` in a temp home, drift tested every second; stopped afterwards."""
    home = tmp_path_factory.mktemp("team") / "gb"
    home.mkdir(parents=True)
    settings = Settings(home=home, server={"port": free_port()},  # type: ignore[arg-type]
                        controller={"poll_interval_s": 0.5},
                        monitoring={"drift_interval_s": 1.0, "window_size": 60},
                        mlflow={"ui_url": MLFLOW_UI}, _env_file=None)
    log = home / "control-plane.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "greenbutton", "up"],
                                   env={**os.environ, **settings.environ()},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        assert settings.server.url
        wait_healthy(settings.server.url, process, log)
        yield _team(settings)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def _team(settings: Settings) -> Team:
    frame = load_wine(as_frame=True).frame.drop(columns="target")
    X, y = frame.drop(columns="alcohol"), frame["alcohol"]
    train, held_out = X.index % 4 != 0, X.index % 4 == 0
    for alpha in (0.01, 1.0):
        pipeline = make_pipeline(StandardScaler(), ElasticNet(alpha=alpha))
        pipeline.fit(X[train], y[train])
        rmse = float(np.sqrt(np.mean((pipeline.predict(X[held_out]) - y[held_out]) ** 2)))
        greenbutton.log_model(wine_model(pipeline), "wine", reference_data=X[train],
                              settings=settings, params={"alpha": alpha},
                              metrics={"rmse_held_out": rmse},
                              pip_requirements=["scikit-learn", "pandas"])
    assert settings.server.url
    tokens = {"admin": (settings.home / "admin.token").read_text().strip()}
    team = Team(settings, settings.server.url, tokens, X, y)
    with team.api() as http:
        for name, role in (("dana", "data-scientist"), ("max", "maintainer"),
                           ("victor", "viewer")):
            assert http.post(f"{API}/principals", json={"name": name, "role": role}
                             ).status_code == 201
            issued = http.post(f"{API}/tokens", json={"principal": name})
            tokens[name] = str(issued.json()["token"])
    return team


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = browser.new_page(viewport=DESKTOP)
    yield opened
    opened.close()


def shot(page: Any, name: str, *, docs: str | None = None, start: Any = None,
         end: Any = None) -> None:
    """A screenshot for the test's artifacts (from ``start``'s top to ``end``'s bottom when
    given, else the viewport); ``docs``: also this docs/img file when asked."""
    clip = None
    if start is not None and end is not None:
        top, bottom = start.bounding_box(), end.bounding_box()
        scrolled = page.evaluate("window.scrollY")
        clip = {"x": 0, "y": max(0, top["y"] + scrolled - 12),
                "width": page.viewport_size["width"],
                "height": bottom["y"] + bottom["height"] - top["y"] + 24}
    paths = [ARTIFACTS / f"{name}.png"]
    folder = os.environ.get("GREENBUTTON_SCREENSHOTS")
    if docs and folder:
        paths.append(Path(folder) / docs)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), clip=clip, full_page=clip is not None)


def sign_in(page: Any, team: Team, who: str, path: str = "/") -> None:
    page.goto(team.url + path)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill(team.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(team.url + path)


def deployment(team: Team) -> dict[str, Any] | None:
    with team.api() as http:
        found = [d for d in http.get(f"{API}/deployments").json()["deployments"]
                 if d["name"] == "wine"]
    return found[0] if found else None


def wait_routed(team: Team, versions: set[int], timeout_s: float = 90) -> None:
    """Until wine is ready and routes at least ``versions``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = deployment(team)
        if found and found["state"] == "ready" and versions <= {
                t["version"] for t in found["traffic"] if t["weight"] > 0}:
            return
        time.sleep(0.25)
    raise AssertionError(f"wine did not route to {versions}: {deployment(team)}")


def ensure_v1_serving(team: Team) -> None:
    """What the first test does through the page, through the API (if it has not run)."""
    with team.api() as http:
        stages = {v["version"]: v["stage"] for v in
                  http.get(f"{API}/models/wine/versions").json()["versions"]}
        if stages[1] != "Production":
            done = http.post(f"{API}/models/wine/versions/1/transitions",
                             json={"stage": "Production", "actor": "admin"})
            assert done.status_code == 201, done.text
    wait_routed(team, {1})


def ensure_split(team: Team) -> None:
    """v1 Production 80 %, v2 Staging (the challenger) 20 %."""
    ensure_v1_serving(team)
    with team.api() as http:
        stages = {v["version"]: v["stage"] for v in
                  http.get(f"{API}/models/wine/versions").json()["versions"]}
        if stages[2] != "Staging":
            done = http.post(f"{API}/models/wine/versions/2/transitions",
                             json={"stage": "Staging", "actor": "admin"})
            assert done.status_code == 201, done.text
        spec = http.get(f"{API}/deployments/wine/spec").json()
        if [r["to"] for r in spec["spec"]["routes"]] != ["production", "challenger"]:
            routes = [{"to": "production", "weight": 80}, {"to": "challenger", "weight": 20}]
            saved = http.put(f"{API}/deployments/wine/spec",
                             json={"spec": {"model": "wine", "routes": routes}})
            assert saved.status_code == 200, saved.text
    wait_routed(team, {1, 2})


def send(team: Team, rows: pd.DataFrame, *, truths: pd.Series | None = None) -> dict[str, int]:
    """One prediction per row through the stable URL (and its reward when ``truths``, by the
    row's index label); requests served per version."""
    served: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for label, row in rows.iterrows():
            answer = http.post(team.endpoint + "predict", json={"inputs": [row.to_dict()]})
            assert answer.status_code == 200, answer.text
            version = answer.headers["x-greenbutton-version"]
            served[version] = served.get(version, 0) + 1
            if truths is not None:
                body = answer.json()
                reward = -(float(body["predictions"][0]) - float(truths.loc[label])) ** 2
                sent = http.post(team.endpoint + "feedback",
                                 json={"request_id": body["request_id"], "reward": reward})
                assert sent.status_code == 201, sent.text
    return served


def points(page: Any, chart: str) -> list[dict[str, float]]:
    return list(page.locator(f"[data-chart='{chart}'] svg[role=img] circle.point").evaluate_all(
        """(cs) => cs.map((c) => ({y: +c.getAttribute('cy'), value: +c.dataset.value,
                                  flagged: c.classList.contains('flagged')}))"""))


def axis(page: Any, chart: str) -> tuple[list[float], dict[str, float]]:
    """The chart's y tick values and its plot area."""
    svg = page.locator(f"[data-chart='{chart}'] svg[role=img]")
    ticks = svg.locator("text.y-tick").evaluate_all("(ts) => ts.map((t) => +t.dataset.value)")
    box = svg.locator(".plot-area").evaluate("""(r) => ({top: +r.getAttribute('y'),
        bottom: +r.getAttribute('y') + +r.getAttribute('height')})""")
    return ticks, box


def test_press_deploy_then_rollout_shows_without_reload(team: Team, page: Any) -> None:
    sign_in(page, team, "admin", "/models/wine")
    expect(page.get_by_role("heading", name="wine", level=1)).to_be_visible()
    run_link = page.locator("tr[data-version='1'] a[title^='run ']")
    assert (run_link.get_attribute("href") or "").startswith(f"{MLFLOW_UI}/#/experiments/")
    page.get_by_label("Reason").focus()
    for _ in range(20):  # the keyboard reaches the green button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Deploy v1":
            break
    assert page.evaluate("document.activeElement.textContent") == "Deploy v1"
    page.evaluate("window.notReloaded = true")
    page.keyboard.press("Enter")
    progress = page.locator("#progress")
    expect(progress).to_contain_text("Running the gates for v1", timeout=5_000)
    rollout = page.locator("[data-rollout='wine']")
    expect(rollout.locator("[data-rollout-text]")).to_have_text("ready: v1 100 %", timeout=90_000)
    expect(rollout.locator("li[data-step-name='done']")).to_have_class("passed")
    expect(page.locator("[data-stage-of='1']")).to_have_text("Production")
    expect(page.get_by_role("button", name="Deploy v1")).to_have_count(0)  # regions refreshed
    assert page.evaluate("window.notReloaded === true")  # all of it without a reload
    shot(page, "model-rollout", docs="dashboard-model.png",
         start=page.locator("header.top"), end=page.locator("table.versions"))


def test_edit_routes_then_traffic_splits_80_20(team: Team, page: Any) -> None:
    ensure_v1_serving(team)
    with team.api() as http:
        http.post(f"{API}/models/wine/versions/2/transitions",
                  json={"stage": "Staging", "actor": "admin"})
    sign_in(page, team, "max", "/deployments/wine")
    page.get_by_text("Edit routes, weights and shadow").click()
    page.get_by_label("Route 1 weight").fill("80")
    page.get_by_role("button", name="Add a route").click()
    page.get_by_label("Route 2 to").select_option("challenger")
    page.get_by_label("Route 2 weight").fill("20")
    page.get_by_role("button", name="Save routes").click()
    expect(page.locator("#toast")).to_contain_text("Saved revision 1")
    expect(page.locator("[data-field='rollout']")).to_have_text("ready: v1 80 %, v2 20 %",
                                                                timeout=90_000)
    served: dict[str, int] = {}
    for burst in range(5):  # traffic over a few seconds: the charts get lines, not dots
        for version, count in send(team, team.X.sample(40, replace=True,
                                                       random_state=burst)).items():
            served[version] = served.get(version, 0) + count
        time.sleep(1.0)
    assert 10 <= 100 * served.get("2", 0) / 200 <= 35, served
    rows = page.locator("[data-versions-table] tbody tr")
    expect(rows.filter(has_text="v2").first).to_contain_text("20 %", timeout=15_000)
    expect(page.locator("[data-chart='rps'] ul.legend li")).to_have_text(["v1", "v2"],
                                                                        timeout=15_000)
    expect(page.locator("[data-live-totals] tbody tr")).to_have_count(2)
    page.wait_for_function("""() => document.querySelectorAll(
        "[data-chart='rps'] svg[role=img] circle.point").length >= 6""", timeout=15_000)
    with team.api() as http:
        entries = http.get(f"{API}/audit?limit=10000").json()["entries"]
    assert any(e["action"] == "deployment.spec.put" and e["actor"] == "max" for e in entries)
    page.get_by_text("Edit routes, weights and shadow").click()  # closed again
    expect(page.locator("[data-chart='latency'] ul.legend li")).to_have_count(4)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "deployment-ab", docs="dashboard.png", start=page.locator("header.top"),
         end=page.locator("[data-chart='rps']"))
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # let the layout and the redrawn charts settle
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "deployment-phone")


def test_feedback_and_shifted_inputs_fill_quality_and_drift_charts(team: Team, page: Any) -> None:
    ensure_split(team)
    sign_in(page, team, "victor", "/deployments/wine")
    send(team, team.X.sample(80, replace=True, random_state=2), truths=team.y)
    shifted = team.X.sample(120, replace=True, random_state=3).assign(
        proline=lambda f: f["proline"] * 3, color_intensity=lambda f: f["color_intensity"] + 6)
    send(team, shifted, truths=team.y)
    quality = page.locator("[data-quality-table] tbody")
    expect(quality).to_contain_text("v1", timeout=30_000)
    expect(page.locator("[data-tests-table] tbody")).to_contain_text("yes", timeout=30_000)
    expect(page.locator("[data-drift-table] tbody")).to_contain_text("proline")
    overall = points(page, "overall")
    assert len(overall) >= 2 and any(p["flagged"] for p in overall)
    assert min(p["value"] for p in overall) < 0.01
    rewards = points(page, "mean_reward")
    assert rewards and all(p["value"] < 0 for p in rewards)
    ticks, box = axis(page, "mean_reward")
    assert min(ticks) <= min(p["value"] for p in rewards) and max(ticks) >= 0
    assert all(box["top"] - 0.5 <= p["y"] <= box["bottom"] + 0.5 for p in rewards)
    assert page.locator("[data-chart='mean_reward'] svg[role=img] path.line").evaluate_all(
        "(ls) => ls.every((l) => getComputedStyle(l).fill === 'none')")
    shot(page, "deployment-quality", docs="dashboard-quality.png",
         start=page.locator("#quality-heading"), end=page.locator("[data-chart='features']"))


def test_serving_log_shows_each_version(team: Team, page: Any) -> None:
    ensure_split(team)
    sign_in(page, team, "victor", "/deployments/wine")
    for version in ("1", "2"):
        for replica in range(team.settings.controller.default_replicas):
            log = page.locator(
                f"pre.log[data-log-version='{version}'][data-log-replica='{replica}']")
            expect(log).to_contain_text("Application startup complete", timeout=15_000)


def test_viewer_cannot_change_routes_from_the_page(team: Team, page: Any) -> None:
    ensure_split(team)
    sign_in(page, team, "victor", "/deployments/wine")
    page.get_by_text("Edit routes, weights and shadow").click()
    expect(page.get_by_role("button", name="Save routes")).to_be_disabled()
    expect(page.locator("#spec-not-allowed")).to_contain_text("viewer")
    status = page.evaluate("""async () => (await fetch("/api/v1/deployments/wine/spec", {
        method: "PUT", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({spec: {model: "wine"}})})).status""")
    assert status == 403  # refused by the API, not only greyed out
    page.goto(team.url + "/audit")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_compare_page_shows_versions_side_by_side(team: Team, page: Any) -> None:
    ensure_split(team)
    send(team, team.X.head(40), truths=team.y.head(40))
    sign_in(page, team, "dana", "/models/wine")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="wine: v1 vs v2")).to_be_visible()
    alpha = page.locator("tr[data-key='param:alpha']")
    expect(alpha).to_have_class("differs")
    expect(alpha.locator("td")).to_have_text(["0.01", "1.0"])
    expect(page.locator("tr[data-key='metric:rmse_held_out']")).to_have_class("differs")
    reward = page.locator("tr[data-key='live:mean_reward'] td")
    expect(reward).to_have_count(2)
    assert all(text.startswith("-") for text in reward.all_text_contents())
    shot(page, "compare", docs="dashboard-compare.png")


def test_propose_then_approve_on_the_approvals_page(team: Team, page: Any,
                                                    browser: Any) -> None:
    ensure_split(team)
    with team.api() as http:
        assert http.put(f"{API}/models/wine/policy", json={"four_eyes": True}).status_code == 200
    sign_in(page, team, "dana", "/approvals")
    page.get_by_label("Model", exact=True).select_option("wine")
    page.get_by_label("Version", exact=True).fill("2")
    page.get_by_label("To", exact=True).select_option("Production")
    page.get_by_role("button", name="Propose").click()
    row = page.locator("[data-requests-table] tbody tr").filter(has_text="v2").first
    expect(row).to_contain_text("pending", timeout=60_000)
    expect(row.locator("ul.gates")).to_contain_text("conformance")
    expect(row.get_by_role("button", name="Approve")).to_be_disabled()  # four-eyes: her own
    reviewer = browser.new_page(viewport=DESKTOP)
    try:
        sign_in(reviewer, team, "max", "/approvals")
        pending = reviewer.locator("[data-requests-table] tbody tr").filter(has_text="v2").first
        shot(reviewer, "approvals", docs="dashboard-approvals.png")
        pending.get_by_role("button", name="Approve").click()
        expect(reviewer.locator("#toast")).to_contain_text("approve done", timeout=30_000)
        expect(reviewer.locator("[data-requests-table] tbody")).to_contain_text(
            "No pending requests")
        reviewer.goto(team.url + "/models/wine")
        expect(reviewer.locator("[data-rollout='wine'] [data-rollout-text]")).to_have_text(
            "ready: v2 100 %", timeout=90_000)
        reviewer.set_viewport_size(PHONE)
        reviewer.goto(team.url + "/approvals?status=all")
        assert reviewer.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    finally:
        reviewer.close()


def test_favicon_is_found(team: Team, page: Any) -> None:
    response = page.goto(team.url + "/favicon.ico")
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "image/x-icon"
