"""Attribution pictures: for image-like inputs the image beside its per-pixel heatmap, for any
other input a bar per feature (the largest |attribution| first)."""

from __future__ import annotations

import io

import numpy as np

TOP_BARS = 15
"""Features drawn in a bar chart; the rest are summed into one "other features" line of text."""
FOR_COLOUR = "#c0392b"
"""Attributions pushing the explained output up (red, as in the heatmap's colour scale)."""
AGAINST_COLOUR = "#2f6db3"
"""Attributions pushing it down (blue)."""


def render_heatmap(pixels: np.ndarray, attributions: np.ndarray, *, title: str) -> bytes:
    """A PNG: ``pixels`` in grey, and ``attributions`` red (for) / blue (against).

    Both arrays are 2-D of the image's shape. The colour scale is symmetric around zero, so
    white means "no influence".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    image_axes, heat_axes = figure.subplots(1, 2)
    image_axes.imshow(pixels, cmap="gray_r", interpolation="nearest")
    image_axes.set_title("input")
    limit = float(np.abs(attributions).max()) or 1.0
    shown = heat_axes.imshow(
        attributions, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    heat_axes.contour(pixels, levels=[float(pixels.mean())], colors="black", linewidths=0.6)
    heat_axes.set_title("attribution")
    for axes in (image_axes, heat_axes):
        axes.set_xticks([])
        axes.set_yticks([])
    figure.colorbar(shown, ax=heat_axes, fraction=0.046, pad=0.04)
    figure.suptitle(title)
    picture = io.BytesIO()
    figure.savefig(picture, format="png")
    return picture.getvalue()



def render_bars(labels: list[str], attributions: np.ndarray, *, title: str) -> bytes:
    """A PNG: one horizontal bar per feature, signed (red for, blue against), labelled with
    ``labels``; the ``TOP_BARS`` largest |attribution| from the top down."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = np.argsort(-np.abs(attributions), kind="stable")
    shown, rest = order[:TOP_BARS], order[TOP_BARS:]
    values = attributions[shown]
    figure = Figure(figsize=(7.5, 1.4 + 0.32 * len(shown)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    rows = np.arange(len(shown))
    axes.barh(rows, values, height=0.7,
              color=[FOR_COLOUR if v > 0 else AGAINST_COLOUR for v in values])
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(rows, [labels[i] for i in shown])
    axes.invert_yaxis()  # the largest at the top
    limit = float(np.abs(values).max()) or 1.0
    axes.set_xlim(min(0.0, float(values.min())) - 0.25 * limit,
                  max(0.0, float(values.max())) + 0.25 * limit)
    for row, value in zip(rows, values, strict=True):
        axes.annotate(f"{value:+.3g}", (float(value), float(row)), va="center",
                      ha="left" if value >= 0 else "right", fontsize=8,
                      xytext=(3 if value >= 0 else -3, 0), textcoords="offset points")
    axes.set_xlabel("attribution (red: for the output, blue: against)")
    if len(rest):
        axes.set_title(f"{len(rest)} other features: {attributions[rest].sum():+.3g} in all",
                       fontsize=8, loc="right")
    figure.suptitle(title, fontsize=9, wrap=True)
    picture = io.BytesIO()
    figure.savefig(picture, format="png")
    return picture.getvalue()
