"""Monitors of one model version: fitted at log time, saved as JSON + npz, loaded by serving.

    artifacts = fit_monitors(reference_frame, predictions, folder,   # in log_model
                             held_out=HeldOut(truths, outputs, probabilities),
                             reference_truths=reference_targets)
    monitors = load_monitors(Path(artifacts[MONITORS_ARTIFACT]))     # in the serving process
    monitors.outlier_scores(frame); monitors.test(window, alpha=0.01)

Layout of the artifact folder: ``monitors.json`` (format version, kinds, JSON parameters) and
one ``<name>.npz`` of numpy arrays per detector, read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .adversarial import FeatureSqueezingDetector
from .columns import categorical_columns
from .contamination import OutlierScoreDriftDetector
from .drift import (
    DriftResult,
    FeatureDriftDetector,
    PredictionDriftDetector,
    Window,
    combine,
)
from .mmd import MMDDetector
from .outliers import OUTLIER_DETECTORS, OutlierDetector, calibrate
from .performance import ConfidenceEstimator, PerformanceDetector
from .quality import DataQualityDetector

MONITORS_ARTIFACT = "greenbutton_monitors"
"""Artifact key of the fitted monitors folder inside the logged model."""
FORMAT_VERSION = 1
FOLDS = 5
"""Folds of the cross-fitting that scores reference rows out of sample (outliers)."""
MIN_FEEDBACK_ROWS = 20
"""Fewer labelled rows than this are not tested (label and performance drift)."""

DETECTORS: dict[str, Any] = {d.kind: d for d in (
    FeatureDriftDetector, DataQualityDetector, MMDDetector, PredictionDriftDetector,
    OutlierScoreDriftDetector, PerformanceDetector)}
"""Detector kind → class (each has ``from_state``)."""
PARTS: dict[str, Any] = {**OUTLIER_DETECTORS, FeatureSqueezingDetector.kind:
                         FeatureSqueezingDetector, ConfidenceEstimator.kind: ConfidenceEstimator}
"""Kinds of the monitors that are not drift tests."""


@dataclass(frozen=True)
class HeldOut:
    """Labelled rows the model did not train on: their truths and the model's outputs (and
    class probabilities, if it gives them) on them; the reference for label, output and
    performance drift."""

    truths: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass
class Monitors:
    """The fitted monitors of one model version.

    ``drift`` tests the inputs and outputs of every window; ``labels`` and ``performance``
    test recent feedback (``labels`` fitted when ``log_model`` got the reference rows'
    targets or held-out rows, ``performance`` with held-out rows); ``confidence`` estimates
    accuracy without labels (when the model also gives class probabilities).
    """

    drift: dict[str, Any]
    outliers: OutlierDetector | None
    adversarial: FeatureSqueezingDetector | None = None
    labels: PredictionDriftDetector | None = None
    performance: PerformanceDetector | None = None
    confidence: ConfidenceEstimator | None = None

    def outlier_scores(self, frame: pd.DataFrame, values: np.ndarray | None = None
                       ) -> np.ndarray:
        """Outlier score per row (zeros when there is no outlier detector); ``values``: the
        frame's rows as one numeric array, when the caller has it."""
        if self.outliers is None:
            return np.zeros(len(frame))
        return self.outliers.score(frame, values)

    def test(self, window: Window, alpha: float) -> dict[str, DriftResult]:
        """Every detector with something to test in ``window`` (feedback ones need
        :data:`MIN_FEEDBACK_ROWS` labelled rows), each at its Bonferroni share of ``alpha``,
        and their combined ``overall`` verdict."""
        active: dict[str, tuple[Any, Window]] = {k: (d, window) for k, d in self.drift.items()}
        if self.labels is not None and window.truths.size >= MIN_FEEDBACK_ROWS:
            # the truths' distribution, tested as the outputs' is
            active["labels"] = (self.labels, replace(window, predictions=window.truths))
        if self.performance is not None and window.outcomes.size >= MIN_FEEDBACK_ROWS:
            active["performance"] = (self.performance, window)
        share = alpha / max(1, len(active))
        results = {name: d.test(tested, share) for name, (d, tested) in active.items()}
        results["overall"] = combine(list(results.values()), alpha)
        return results


def fit_monitors(reference: pd.DataFrame, predictions: Any, folder: Path, *,
                 held_out: HeldOut | None = None, reference_truths: Any = None,
                 categorical: list[str] | None = None, outlier_kind: str = "mahalanobis",
                 target_fpr: float = 0.01, with_mmd: bool = True) -> dict[str, str]:
    """Fit the monitors on ``reference`` and the model's ``predictions`` on it; save them.

    Returns the artifacts to log with the model: ``{MONITORS_ARTIFACT: folder}``.
    """
    monitors = fit(reference, predictions, held_out=held_out,
                   reference_truths=reference_truths, categorical=categorical,
                   outlier_kind=outlier_kind, target_fpr=target_fpr, with_mmd=with_mmd)
    target = folder / MONITORS_ARTIFACT
    save(monitors, target)
    return {MONITORS_ARTIFACT: str(target)}


def fit(reference: pd.DataFrame, predictions: Any, *, held_out: HeldOut | None = None,
        reference_truths: Any = None, categorical: list[str] | None = None,
        outlier_kind: str = "mahalanobis", target_fpr: float = 0.01,
        with_mmd: bool = True) -> Monitors:
    """Fitted (unsaved) monitors; see :func:`fit_monitors`. ``reference_truths``: the true
    targets of the reference rows, one per row, if known; ``categorical``: columns to test
    as categories besides those inferred (strings, booleans, numeric codes)."""
    if outlier_kind not in OUTLIER_DETECTORS:
        raise InvalidInput(f"unknown outlier detector {outlier_kind!r}; known: "
                           f"{sorted(OUTLIER_DETECTORS)}", field="outlier_kind")
    try:
        coded = categorical_columns(reference, categorical or ())
    except ValueError as error:
        raise InvalidInput(str(error), field="categorical") from None
    outputs = np.asarray(predictions)
    detector, calibration = fit_outliers(OUTLIER_DETECTORS[outlier_kind], reference, target_fpr)
    drift: dict[str, Any] = {
        "features": FeatureDriftDetector.fit(reference, coded),
        "quality": DataQualityDetector.fit(reference, coded),
        "predictions": PredictionDriftDetector.fit(
            outputs if held_out is None else np.asarray(held_out.predictions)),
        "outlier_scores": OutlierScoreDriftDetector(calibration, detector.threshold),
    }
    if with_mmd:
        drift["mmd"] = MMDDetector.fit(reference)
    monitors = Monitors(drift, detector, FeatureSqueezingDetector.fit(reference, outputs))
    monitors.labels = _fit_labels(held_out, reference_truths)
    if held_out is not None:
        _fit_feedback(monitors, held_out)
    return monitors


def _fit_labels(held_out: HeldOut | None, reference_truths: Any
                ) -> PredictionDriftDetector | None:
    """The label-drift test, fitted on every known truth: the reference rows' and the
    held-out rows' (missing ones left out). Unlike outputs, truths do not depend on whether
    the model trained on their rows, so the training targets are as good a reference as the
    held-out ones, and usually several times as many: with 312 reference and 85 held-out
    rows (breast cancer), a prior shift of 20 points in a window of 100 was found in 100 %
    of windows, against 36 % with the held-out truths alone."""
    parts = [np.asarray(t).reshape(len(t), -1)[:, 0] for t in (
        None if held_out is None else held_out.truths, reference_truths) if t is not None]
    if len({pd.api.types.is_numeric_dtype(pd.Series(p).infer_objects()) for p in parts}) > 1:
        raise InvalidInput("reference_targets and the held-out targets must be of one kind "
                           "(numbers, or labels of one type)", field="reference_targets")
    truths = np.concatenate(parts) if parts else np.empty(0)
    truths = truths[~pd.isna(truths)] if truths.size else truths
    return PredictionDriftDetector.fit(truths) if truths.size else None


def fit_outliers(kind: Any, reference: pd.DataFrame, target_fpr: float
                 ) -> tuple[OutlierDetector, np.ndarray]:
    """The outlier detector fitted on every reference row, and out-of-sample scores of
    those rows (:data:`FOLDS`-fold cross-fitting), its threshold set to flag ``target_fpr``
    of them: all the rows calibrate the threshold and the contamination tests, not a
    held-back fifth (with a few hundred rows, too few to place a 1 % threshold)."""
    if len(reference) < 2 * FOLDS:  # too few rows to hold any back: calibrated in-sample
        detector = kind.fit(reference)
        calibration = detector.score(reference)
    else:
        order = np.random.default_rng(0).permutation(len(reference))
        detector, calibration = kind.fit_calibrated(reference, np.array_split(order, FOLDS))
    detector.threshold = calibrate(calibration, target_fpr)
    return detector, np.asarray(calibration, dtype=float)


def _fit_feedback(monitors: Monitors, held_out: HeldOut) -> None:
    """Performance and confidence monitors from the held-out rows."""
    truths = np.asarray(held_out.truths)
    monitors.performance = PerformanceDetector.fit(held_out.predictions, truths)
    probabilities = held_out.probabilities
    if (probabilities is not None and monitors.performance.measure == "accuracy"
            and len(truths) >= ConfidenceEstimator.min_rows):
        monitors.confidence = ConfidenceEstimator.fit(np.asarray(probabilities),
                                                      monitors.performance.reference)


def save(monitors: Monitors, folder: Path) -> None:
    """Write ``monitors`` as ``monitors.json`` plus one ``.npz`` per detector."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = dict(monitors.drift)
    for name in SINGLE_PARTS:
        if getattr(monitors, name) is not None:
            parts[name] = getattr(monitors, name)
    index: dict[str, Any] = {"format": FORMAT_VERSION, "detectors": {}}
    for name, detector in parts.items():
        params, arrays = detector.state()
        np.savez(folder / f"{name}.npz", **arrays)
        index["detectors"][name] = {"kind": detector.kind, "params": params}
    (folder / "monitors.json").write_text(json.dumps(index, indent=1))


SINGLE_PARTS = ("outliers", "adversarial", "labels", "performance", "confidence")
"""Monitors stored under their own name, not among the drift tests of every window."""


def load_monitors(folder: Path) -> Monitors:
    """Monitors saved by :func:`fit_monitors`; never unpickles (``allow_pickle=False``)."""
    index = json.loads((folder / "monitors.json").read_text())
    if index.get("format") != FORMAT_VERSION:
        raise InvalidInput(f"unsupported monitors format {index.get('format')!r}")
    tables: dict[str, Any] = {**DETECTORS, **PARTS}
    monitors = Monitors({}, None)
    for name, entry in index["detectors"].items():
        if not (folder / f"{name}.npz").resolve().is_relative_to(folder.resolve()):
            raise InvalidInput(f"detector name {name!r} escapes the monitors folder")
        with np.load(folder / f"{name}.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        detector = tables[entry["kind"]].from_state(entry["params"], arrays)
        if name in SINGLE_PARTS:
            setattr(monitors, name, detector)
        else:
            monitors.drift[name] = detector
    return monitors
