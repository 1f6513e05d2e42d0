"""Monitors of one model version: fitted at log time, saved as JSON + npz, loaded by serving.

    artifacts = fit_monitors(reference_frame, predictions, folder)   # in log_model
    monitors = load_monitors(Path(artifacts[MONITORS_ARTIFACT]))     # in the serving process
    monitors.outlier_scores(frame); monitors.test(window, alpha=0.01)

Layout of the artifact folder: ``monitors.json`` (format version, kinds, JSON parameters) and
one ``<name>.npz`` of numpy arrays per detector, read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .adversarial import FeatureSqueezingDetector
from .drift import (
    DETECTORS,
    DriftResult,
    FeatureDriftDetector,
    MMDDetector,
    OutlierScoreDriftDetector,
    PredictionDriftDetector,
    Window,
    combine,
)
from .outliers import OUTLIER_DETECTORS, OutlierDetector, calibrate

MONITORS_ARTIFACT = "greenbutton_monitors"
"""Artifact key of the fitted monitors folder inside the logged model."""
FORMAT_VERSION = 1
HELD_BACK_FRACTION = 0.2
"""Share of the reference rows kept out of the outlier fit to calibrate its threshold."""
MIN_HELD_BACK_ROWS = 50


@dataclass
class Monitors:
    """The fitted monitors of one model version."""

    drift: dict[str, Any]
    outliers: OutlierDetector | None
    adversarial: FeatureSqueezingDetector | None = None

    def outlier_scores(self, frame: pd.DataFrame, values: np.ndarray | None = None
                       ) -> np.ndarray:
        """Outlier score per row (zeros when there is no outlier detector); ``values``: the
        frame's rows as one numeric array, when the caller has it."""
        if self.outliers is None:
            return np.zeros(len(frame))
        return self.outliers.score(frame, values)

    def test(self, window: Window, alpha: float) -> dict[str, DriftResult]:
        """Every drift detector on ``window`` and their Bonferroni-combined ``overall`` verdict."""
        count = max(1, len(self.drift))
        results = {name: d.test(window, alpha / count) for name, d in self.drift.items()}
        results["overall"] = combine(list(results.values()), alpha)
        return results


def fit_monitors(reference: pd.DataFrame, predictions: Any, folder: Path, *,
                 outlier_kind: str = "mahalanobis", target_fpr: float = 0.01,
                 with_mmd: bool = True) -> dict[str, str]:
    """Fit the monitors on ``reference`` and the model's ``predictions`` on it; save them.

    Returns the artifacts to log with the model: ``{MONITORS_ARTIFACT: folder}``.
    """
    monitors = fit(reference, predictions, outlier_kind=outlier_kind, target_fpr=target_fpr,
                   with_mmd=with_mmd)
    target = folder / MONITORS_ARTIFACT
    save(monitors, target)
    return {MONITORS_ARTIFACT: str(target)}


def fit(reference: pd.DataFrame, predictions: Any, *, outlier_kind: str = "mahalanobis",
        target_fpr: float = 0.01, with_mmd: bool = True) -> Monitors:
    """Fitted (unsaved) monitors; see :func:`fit_monitors`."""
    if outlier_kind not in OUTLIER_DETECTORS:
        raise InvalidInput(f"unknown outlier detector {outlier_kind!r}; known: "
                           f"{sorted(OUTLIER_DETECTORS)}", field="outlier_kind")
    outputs = np.asarray(predictions)
    order = np.random.default_rng(0).permutation(len(reference))
    held = max(MIN_HELD_BACK_ROWS, int(len(reference) * HELD_BACK_FRACTION))
    if len(reference) < 2 * held:  # too few rows to hold any back: calibrate in-sample
        fit_rows, held_rows = order, order
    else:
        fit_rows, held_rows = order[held:], order[:held]
    detector = OUTLIER_DETECTORS[outlier_kind].fit(reference.iloc[fit_rows])
    calibration = detector.score(reference.iloc[held_rows])
    detector.threshold = calibrate(calibration, target_fpr)
    drift: dict[str, Any] = {
        "features": FeatureDriftDetector.fit(reference, outputs),
        "predictions": PredictionDriftDetector.fit(reference, outputs),
        "outlier_scores": OutlierScoreDriftDetector(calibration, detector.threshold),
    }
    if with_mmd:
        drift["mmd"] = MMDDetector.fit(reference, outputs)
    return Monitors(drift, detector, FeatureSqueezingDetector.fit(reference, outputs))


def save(monitors: Monitors, folder: Path) -> None:
    """Write ``monitors`` as ``monitors.json`` plus one ``.npz`` per detector."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = dict(monitors.drift)
    if monitors.outliers is not None:
        parts["outliers"] = monitors.outliers
    if monitors.adversarial is not None:
        parts["adversarial"] = monitors.adversarial
    index: dict[str, Any] = {"format": FORMAT_VERSION, "detectors": {}}
    for name, detector in parts.items():
        params, arrays = detector.state()
        np.savez(folder / f"{name}.npz", **arrays)
        index["detectors"][name] = {"kind": detector.kind, "params": params}
    (folder / "monitors.json").write_text(json.dumps(index, indent=1))


def load_monitors(folder: Path) -> Monitors:
    """Monitors saved by :func:`fit_monitors`; never unpickles (``allow_pickle=False``)."""
    index = json.loads((folder / "monitors.json").read_text())
    if index.get("format") != FORMAT_VERSION:
        raise InvalidInput(f"unsupported monitors format {index.get('format')!r}")
    tables: dict[str, Any] = {**DETECTORS, **OUTLIER_DETECTORS,
                              FeatureSqueezingDetector.kind: FeatureSqueezingDetector}
    monitors = Monitors({}, None)
    for name, entry in index["detectors"].items():
        if not (folder / f"{name}.npz").resolve().is_relative_to(folder.resolve()):
            raise InvalidInput(f"detector name {name!r} escapes the monitors folder")
        with np.load(folder / f"{name}.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        detector = tables[entry["kind"]].from_state(entry["params"], arrays)
        if name == "outliers":
            monitors.outliers = detector
        elif name == "adversarial":
            monitors.adversarial = detector
        else:
            monitors.drift[name] = detector
    return monitors
