"""``greenbutton explain MODEL --row K --png out.png``: run in the sandbox, on a copy."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import pandas as pd
import pytest

import greenbutton
from greenbutton.config import Settings
from greenbutton.errors import InvalidInput
from greenbutton.explain.report import explain_reference_row

from .conftest import DigitPipeline, save_with_reference

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
