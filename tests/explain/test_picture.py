"""``greenbutton explain MODEL --row K --png out.png``: run in the sandbox, on a copy."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import greenbutton
from greenbutton.config import Settings
from greenbutton.errors import InvalidInput
from greenbutton.explain.picture import TOP_BARS, render_bars
from greenbutton.explain.report import explain_reference_row

from .conftest import REFERENCE_ROWS, DigitPipeline, save_with_reference

pytest.importorskip("shap", reason="explanations need the greenbutton[explain] extra")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECRET = f"gb_admin-{uuid.uuid4().hex}"


class Snoop(greenbutton.Model):
    """Explains itself with whatever it can read of the platform's home."""

    def __init__(self, token_path: str) -> None:
        self.token_path = token_path

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return [0] * len(model_input)

    def explain(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        try:
            return [{"loot": Path(self.token_path).read_text()}]
        except OSError as error:
            return [{"loot": f"refused: {type(error).__name__}"}]


class Applicant(greenbutton.Model):
    """A credit decision on named tabular columns (no image)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.pipeline.predict(model_input)


def applicants() -> tuple[pd.DataFrame, pd.Series]:
    """Eight named columns, each of a similar weight in the decision, and the decision."""
    rng = np.random.default_rng(7)
    weights = {"income": 1.0, "age": 0.7, "debt_ratio": -1.2, "tenure_years": 0.9,
               "late_payments": -0.8, "savings": 1.1, "open_accounts": -1.0,
               "zip_density": 0.85}
    X = pd.DataFrame(rng.normal(size=(400, len(weights))) * 3 + 10, columns=list(weights))
    score = (X - 10) @ pd.Series(weights) + rng.normal(size=400)
    return X, (score > 0).astype(int)


def balanced_row(X: pd.DataFrame) -> int:
    """A reference row with every feature 0.5 to 2.5 standard deviations from its mean, so
    every bar is long enough to measure."""
    z = ((X - X.mean()) / X.std()).abs().head(REFERENCE_ROWS)
    return int(np.flatnonzero(((z > 0.5) & (z < 2.5)).all(axis=1))[0])


@pytest.fixture
def restored_mlflow_uris() -> Iterator[None]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def save_by_value(python_model: Any, folder: Path,
                  digits_xy: tuple[pd.DataFrame, pd.Series]) -> Path:
    """Saved so the sandbox can unpickle it without importing the tests."""
    modules = {sys.modules[type(python_model).__module__], sys.modules[__name__]}
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    folder.mkdir()
    try:
        return save_with_reference(python_model, folder, *digits_xy)
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)


def test_explain_row_writes_heatmap_png(
    settings: Settings, tmp_path: Path, restored_mlflow_uris: None,
    digits_xy: tuple[pd.DataFrame, pd.Series], digits_pipeline: Any,
) -> None:
    saved = save_by_value(DigitPipeline(digits_pipeline), tmp_path / "saved", digits_xy)
    png = tmp_path / "row7.png"
    text = explain_reference_row(settings, str(saved), 7, png=png, output=None)
    assert "LinearExplainer" in text and "predicted 7" in text
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 5_000


def test_explain_row_out_of_range_is_invalid_input(
    settings: Settings, tmp_path: Path, restored_mlflow_uris: None,
    digits_xy: tuple[pd.DataFrame, pd.Series], digits_pipeline: Any,
) -> None:
    saved = save_by_value(DigitPipeline(digits_pipeline), tmp_path / "saved", digits_xy)
    with pytest.raises(InvalidInput):
        explain_reference_row(settings, str(saved), 10_000, png=None, output=None)


def test_explained_model_cannot_read_the_platform_token(
    settings: Settings, tmp_path: Path, restored_mlflow_uris: None,
    digits_xy: tuple[pd.DataFrame, pd.Series],
) -> None:
    settings.home.mkdir(parents=True, mode=0o700)
    token = settings.home / "admin.token"
    token.write_text(SECRET)
    saved = save_by_value(Snoop(str(token)), tmp_path / "saved", digits_xy)
    text = explain_reference_row(settings, str(saved), 0, png=None, output=None)
    assert "refused" in text and SECRET not in text


def _bars(png: Path) -> list[tuple[str, int]]:
    """The picture's bars from top to bottom: ("+" red or "-" blue, length in pixels)."""
    rgb = imread(str(png))[:, :, :3]
    red = (rgb[:, :, 0] > 0.6) & (rgb[:, :, 1] < 0.4) & (rgb[:, :, 2] < 0.4)
    blue = (rgb[:, :, 2] > 0.55) & (rgb[:, :, 0] < 0.35)
    bars: list[tuple[str, int]] = []
    previous = 0
    for y in range(rgb.shape[0]):
        counts = {"+": int(red[y].sum()), "-": int(blue[y].sum())}
        sign = max(counts, key=lambda k: counts[k])
        width = counts[sign]
        if width > 0 and previous == 0:
            bars.append((sign, width))
        elif width > 0:
            bars[-1] = (bars[-1][0], max(bars[-1][1], width))
        previous = width
    return [bar for bar in bars if bar[1] >= 2]


def _listed_attributions(text: str) -> list[float]:
    """The signed attributions the summary lists (largest |attribution| first)."""
    return [float(line.split()[-1]) for line in text.splitlines()[2:]
            if not line.startswith("wrote ")]


def test_explain_tabular_row_draws_a_bar_per_feature_sized_by_attribution(
    settings: Settings, tmp_path: Path, restored_mlflow_uris: None,
) -> None:
    X, y = applicants()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    saved = save_by_value(Applicant(pipeline), tmp_path / "saved", (X, y))
    png = tmp_path / "applicant.png"
    text = explain_reference_row(settings, str(saved), balanced_row(X), png=png, output=None)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(str(png)).shape[:2]
    assert 300 <= width <= 2000 and 200 <= height <= 2000
    bars = _bars(png)
    listed = _listed_attributions(text)
    assert len(bars) == X.shape[1]
    lengths = [length for _, length in bars]
    assert lengths == sorted(lengths, reverse=True)
    longest = bars[0][1]
    for (sign, length), value in zip(bars, listed, strict=False):
        assert sign == ("+" if value > 0 else "-")
        assert abs(length - longest * abs(value) / abs(listed[0])) <= 4 + 0.03 * longest


def test_render_bars_draws_only_the_largest_attributions(tmp_path: Path) -> None:
    values = np.array([0.1 * (i + 1) * (-1) ** i for i in range(TOP_BARS + 10)])
    png = tmp_path / "bars.png"
    png.write_bytes(render_bars([f"feature_{i}" for i in range(len(values))], values,
                                title="many features"))
    bars = _bars(png)
    expected = values[np.argsort(-np.abs(values))][:TOP_BARS]
    assert [sign for sign, _ in bars] == ["+" if v > 0 else "-" for v in expected]
    for (_, length), value in zip(bars, expected, strict=True):
        assert abs(length - bars[0][1] * abs(value) / abs(expected[0])) <= 4
