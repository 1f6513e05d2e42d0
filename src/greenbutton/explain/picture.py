"""An attribution picture for image-like inputs: the image beside its per-pixel heatmap."""

from __future__ import annotations

import io

import numpy as np


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
