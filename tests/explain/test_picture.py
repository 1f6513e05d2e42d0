"""``greenbutton explain MODEL --row K --png out.png`` on the digits demo model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from greenbutton.config import Settings
from greenbutton.explain.report import explain_reference_row

pytest.importorskip("shap", reason="explanations need the greenbutton[explain] extra")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def restored_mlflow_uris() -> Iterator[None]:
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_explain_row_writes_heatmap_png(
    settings: Settings, saved_pipeline: Path, tmp_path: Path, restored_mlflow_uris: None
) -> None:
    png = tmp_path / "row7.png"
    text = explain_reference_row(settings, str(saved_pipeline), 7, png=png, output=None)
    assert "LinearExplainer" in text and "predicted 7" in text
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 5_000
