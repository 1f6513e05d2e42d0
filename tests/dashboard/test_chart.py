"""The SVG chart renderer (``static/chart.js``) in Chromium: what a person sees on a chart.

Each test draws known series and measures the drawing: one marker per point, lines that are
lines (not filled shapes), every point inside the axes, axis labels spanning the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import chromium

pytestmark = pytest.mark.slow

STATIC = Path(__file__).resolve().parents[2] / "src/greenbutton/controlplane/dashboard/static"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 900, "height": 600})
    page.set_content('<figure class="chart"><svg role="img"></svg></figure>')
    page.add_style_tag(content=(STATIC / "dashboard.css").read_text())
    page.add_script_tag(content=(STATIC / "chart.js").read_text())
    yield page
    page.close()


def draw(page: Any, series: list[dict[str, Any]], opts: dict[str, Any] | None = None) -> None:
    page.evaluate("([series, opts]) => GBChart.render(document.querySelector('svg'), series, opts)",
                  [series, opts or {}])


def points_of(page: Any) -> list[dict[str, float]]:
    return list(page.evaluate("""() => [
        ...document.querySelectorAll('svg[role=img] circle.point')].map((c) => ({
            x: +c.getAttribute('cx'), y: +c.getAttribute('cy'), value: +c.dataset.value}))"""))


def plot_box(page: Any) -> dict[str, float]:
    return dict(page.evaluate("""() => {
        const b = document.querySelector('svg .plot-area');
        return {top: +b.getAttribute('y'), left: +b.getAttribute('x'),
                bottom: +b.getAttribute('y') + +b.getAttribute('height'),
                right: +b.getAttribute('x') + +b.getAttribute('width')};
    }"""))


def y_ticks(page: Any) -> list[tuple[float, float]]:
    """(value, y) of every labelled y-axis tick."""
    found = page.evaluate("""() => [...document.querySelectorAll('svg text.y-tick')].map(
        (t) => [+t.dataset.value, +t.dataset.y])""")
    return [(float(v), float(y)) for v, y in found]


def series(name: str, values: list[float | None], step_s: float = 2.0) -> dict[str, Any]:
    return {"name": name, "points": [[T0 + i * step_s, v] for i, v in enumerate(values)]}


def test_render_many_points_draws_unfilled_line_with_a_marker_per_point(page: Any) -> None:
    draw(page, [series("v1", [3.0, 5.0, 4.0, 8.0, 6.0, 7.0, 2.0, 9.0])], {"unit": "ms"})
    assert len(points_of(page)) == 8
    lines = page.locator("svg[role=img] .line")
    assert lines.count() == 1
    assert lines.first.evaluate("(l) => getComputedStyle(l).fill") == "none"
    assert lines.first.evaluate("(l) => getComputedStyle(l).stroke") != "none"


def test_render_negative_values_fit_the_axis(page: Any) -> None:
    rewards = [-0.36, -0.31, -0.33, -0.30, -0.35]
    draw(page, [series("v1 mean reward", rewards)])
    box, ticks = plot_box(page), y_ticks(page)
    for point in points_of(page):
        assert box["top"] - 0.5 <= point["y"] <= box["bottom"] + 0.5, point
    values = [v for v, _ in ticks]
    assert min(values) <= -0.36 and max(values) >= -0.30
    assert max(values) - min(values) < 1.0  # the axis fits the data, not 0-0.025 or 0-10


def test_render_places_points_where_the_axis_says(page: Any) -> None:
    draw(page, [series("v1", [0.0, 25.0, 50.0, 12.5])])
    (low, low_y), (high, high_y) = min(y_ticks(page)), max(y_ticks(page))
    assert low <= 0.0 and high >= 50.0
    per_unit = (low_y - high_y) / (high - low)
    for point in points_of(page):
        assert abs(point["y"] - (low_y - (point["value"] - low) * per_unit)) < 0.6, point


def test_render_keeps_labels_unstretched(page: Any) -> None:
    draw(page, [series("v1", [1.0, 2.0, 3.0])])
    width, height, box = page.evaluate("""() => {
        const svg = document.querySelector('svg');
        const view = svg.viewBox.baseVal;
        return [view.width, view.height, svg.getBoundingClientRect()];
    }""")
    assert abs(width - box["width"]) < 1.5 and abs(height - box["height"]) < 1.5


def test_render_log_scale_spaces_decades_evenly(page: Any) -> None:
    draw(page, [series("p-value", [1.0, 0.1, 0.01, 0.001])], {"log": True})
    ys = [p["y"] for p in points_of(page)]
    gaps = [b - a for a, b in zip(ys, ys[1:], strict=False)]
    assert all(g > 0 for g in gaps)
    assert max(gaps) - min(gaps) < 0.6
    labels = [v for v, _ in y_ticks(page)]
    assert 1.0 in labels and 0.001 in labels


def test_render_missing_value_breaks_the_line(page: Any) -> None:
    draw(page, [series("v1", [1.0, 2.0, None, 3.0, 4.0])])
    assert page.locator("svg[role=img] .line").count() == 2
    assert len(points_of(page)) == 4


def test_render_flagged_points_are_marked(page: Any) -> None:
    flagged = {"name": "overall", "points": [[T0, 0.5], [T0 + 2, 0.001, True], [T0 + 4, 0.4]]}
    draw(page, [flagged], {"log": True})
    assert page.locator("svg[role=img] circle.point.flagged").count() == 1


def test_render_time_axis_has_labels_inside_the_plot(page: Any) -> None:
    draw(page, [series("v1", [1.0] * 31, step_s=10.0)])  # five minutes
    labels = page.locator("svg text.x-tick")
    assert labels.count() >= 3
    box = plot_box(page)
    for x in labels.evaluate_all("(ts) => ts.map((t) => +t.getAttribute('x'))"):
        assert box["left"] - 1 <= x <= box["right"] + 1


def test_render_legend_names_every_series(page: Any) -> None:
    draw(page, [series("v1", [1.0, 2.0]), series("v2", [2.0, 1.0])])
    legend = page.locator("figure .legend li")
    assert legend.all_text_contents() == ["v1", "v2"]


def test_render_log_scale_puts_tiny_p_values_at_a_labelled_floor(page: Any) -> None:
    draw(page, [series("overall", [0.5, 1.5e-32])], {"log": True, "yMax": 1})
    box = plot_box(page)
    lowest = max(points_of(page), key=lambda p: p["y"])
    assert lowest["value"] == 1.5e-32  # the tooltip and data keep the real value
    assert abs(lowest["y"] - box["bottom"]) < 0.6
    bottom = page.locator("svg text.y-tick").first.text_content() or ""
    assert bottom.startswith("≤")


def test_render_all_zero_values_sit_on_the_baseline(page: Any) -> None:
    draw(page, [series("v1 errors", [0.0, 0.0, 0.0])])
    box = plot_box(page)
    assert all(abs(p["y"] - box["bottom"]) < 0.6 for p in points_of(page))
