"""Outlier detectors: a score per row and a threshold calibrated to a false-positive rate.

The threshold is the split-conformal ``1 - target_fpr`` rank of out-of-sample scores of the
reference rows (cross-fitted: ``monitors.fit_outliers``), so at most about ``target_fpr`` of
clean traffic is flagged.
State is JSON + numpy arrays (no pickle). Detectors are chosen from :data:`OUTLIER_DETECTORS`.

    detector, scores = MahalanobisDetector.fit_calibrated(reference, folds)
    detector.threshold = calibrate(scores, target_fpr=0.01)
    flags = detector.score(frame) > detector.threshold
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf, MinCovDet
from sklearn.ensemble import IsolationForest

from .columns import is_categorical
from .drift import Arrays


class OutlierDetector(Protocol):
    """Scores rows; higher is more unusual, above ``threshold`` is an outlier."""

    kind: ClassVar[str]
    threshold: float

    def score(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        """One score per row of ``frame``; ``values``, when given, are its rows as one numeric
        array in its column order (read instead of converting the frame)."""
        ...

    def state(self) -> tuple[dict[str, Any], Arrays]: ...


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The numeric ``columns`` of ``frame`` as floats (to fit on), a missing value as its
    column's median, an infinite one as the largest float."""
    values = ColumnSelector(columns).raw(frame)
    if np.isnan(values).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
            medians = np.nan_to_num(np.nanmedian(values, axis=0))
        values = np.where(np.isnan(values), medians, values)
    return finite(values)


class ColumnSelector:
    """Picks a detector's columns out of request frames as a float matrix, on every request.

    The data plane builds request frames on one shared columns index, so after the first
    comparison a frame's columns are recognised by identity (indexes are immutable):
    iterating a string index costs tens of microseconds, comparing identities nothing.
    """

    def __init__(self, columns: list[str]) -> None:
        self.index = pd.Index(columns)
        self._known = self.index

    def matrix(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        """The columns as floats; missing and infinite values as 0 and the largest floats."""
        return finite(self.raw(frame, values))

    def raw(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        """The columns as floats, missing and infinite values left as they are.

        ``values``: ``frame``'s rows as one numeric array, if the caller has it; used as they
        are when the frame has exactly the detector's columns (no pandas conversion: in a
        server, where code that runs once per request runs cold, that is most of its cost).
        """
        columns = frame.columns
        if columns is not self._known:
            if not columns.equals(self.index):
                frame = frame[self.index]
                values = None
            else:
                self._known = columns
        if values is not None:
            return values if values.dtype == np.float64 else values.astype(np.float64)
        converted: np.ndarray = frame.to_numpy(dtype=float)
        return converted


def finite(values: np.ndarray) -> np.ndarray:
    """``values`` with missing and infinite values as 0 and the largest floats."""
    return values if np.isfinite(values).all() else np.nan_to_num(values)


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Columns an outlier detector scores (categorical ones are left to the drift tests)."""
    return [c for c in frame.columns if not is_categorical(frame[c])]


def calibrate(scores: np.ndarray, target_fpr: float) -> float:
    """The threshold that flags at most ``target_fpr`` of new rows exchangeable with these
    clean scores: the ⌈(n + 1)(1 − target_fpr)⌉-th smallest of the n scores (the split-
    conformal rank; the plain quantile flags a little more, ``1/n`` at most), or the largest
    when there are too few."""
    ordered = np.sort(np.asarray(scores, dtype=float))
    rank = math.ceil((len(ordered) + 1) * (1.0 - target_fpr))
    return float(ordered[min(rank, len(ordered)) - 1])


class MahalanobisDetector:
    """Robust Mahalanobis distance (Minimum Covariance Determinant) on standardised features.

    Features constant in the reference add their squared deviation from that constant, so an
    input that lights up a pixel never lit in training scores high however the rest looks.
    """

    kind: ClassVar[str] = "mahalanobis"

    def __init__(self, columns: list[str], center: np.ndarray, scale: np.ndarray,
                 location: np.ndarray, precision: np.ndarray, threshold: float = np.inf) -> None:
        self.columns, self.center, self.scale = columns, center, scale
        self.location, self.precision, self.threshold = location, precision, threshold
        self._select = ColumnSelector(columns)
        # scoring folded into one affine map and one quadratic form over all columns:
        # varying features are standardised and centred on the robust location, constant
        # ones only shifted, and the form is the precision on the first, identity on these
        varying = scale > 0
        self._scale = 1.0 / np.where(varying, scale, 1.0)
        self._shift = center * self._scale
        self._shift[varying] += location
        self._form = np.eye(len(columns))
        self._form[np.ix_(varying, varying)] = precision
        # the same for one row, in raw units: (x·a − b)ᵀ F (x·a − b) = (x − b/a)ᵀ (a F a) (x − b/a)
        self._offset = self._shift / self._scale
        self._raw_form = self._scale[:, None] * self._form * self._scale[None, :]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> MahalanobisDetector:
        return cls.fit_calibrated(frame, [])[0]

    @classmethod
    def fit_calibrated(cls, frame: pd.DataFrame, folds: list[np.ndarray]
                       ) -> tuple[MahalanobisDetector, np.ndarray]:
        """The detector fitted on all rows, and a score for each row in ``folds`` from the
        estimate without that fold's rows.

        The robust support and the shrinkage amount are chosen once, on all rows, and every
        fold re-estimates only location and covariance: a fold's estimate then differs from
        the final one by its rows alone, so its rows' scores are exchangeable with the
        final one's scores of new rows. Ledoit-Wolf's amount grows as rows get fewer; chosen
        per fold, it shrank the folds' estimates more than the final one, scoring reference
        rows lower than new ones (on 221 rows, 1.2 % of clean rows above a threshold
        placed for at most 0.9 %). Re-running the MCD search per fold would cost seconds."""
        columns = numeric_columns(frame)
        values = numeric_matrix(frame, columns)
        support = _robust_support(values)
        shrinkage = _shrinkage(values)
        scores = np.full(len(values), np.nan)
        for fold in folds:
            rest = np.ones(len(values), dtype=bool)
            rest[fold] = False
            estimate = cls._estimated(columns, values[rest], support[rest], shrinkage)
            scores[fold] = estimate.score(frame.iloc[fold])
        return cls._estimated(columns, values, support, shrinkage), scores

    @classmethod
    def _estimated(cls, columns: list[str], values: np.ndarray, support: np.ndarray,
                   shrinkage: float) -> MahalanobisDetector:
        """Location and covariance of the ``support`` rows (the reweighted MCD estimate),
        shrunk toward the identity by ``shrinkage`` so rare features stay invertible."""
        center, scale = values.mean(axis=0), values.std(axis=0)
        varying = scale > 0
        standard = (values[:, varying] - center[varying]) / scale[varying]
        inliers = standard[support] if support.sum() > 1 else standard
        location = inliers.mean(axis=0)
        covariance = np.atleast_2d(np.cov(inliers.T, bias=True))
        dims = covariance.shape[0]
        covariance = (1 - shrinkage) * covariance + shrinkage * np.trace(covariance) / dims * \
            np.eye(dims)
        return cls(columns, center, scale, location, np.linalg.pinv(covariance))

    def score(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        values = self._select.raw(frame, values)
        if len(values) == 1:  # most requests: a few numpy calls (each costs in a server)
            delta = values[0] - self._offset
            # a sum of squares is NaN or inf when an input is (squares cannot cancel), or when
            # the row is too large to square: the general path below scores both kinds;
            # ndarray.dot skips the ufunc machinery of a sum or of the @ operator
            if math.isfinite(delta.dot(delta)):
                return np.array([math.sqrt(max(float(delta.dot(self._raw_form).dot(delta)),
                                                0.0))])
        # a missing value counts as the robust centre: typical in that feature (the
        # missing-value check counts missing values, this score looks at the rest)
        values = values if not np.isnan(values).any() else np.where(
            np.isnan(values), self._offset, values)
        with np.errstate(over="ignore", invalid="ignore"):
            delta = finite(values) * self._scale - self._shift
            squared = np.einsum("ij,ij->i", delta @ self._form, delta)
        # an infinite input overflows (inf - inf: NaN, never above a threshold): it scores inf
        result: np.ndarray = np.sqrt(np.where(np.isnan(squared), np.inf, np.maximum(squared, 0)))
        return result

    def state(self) -> tuple[dict[str, Any], Arrays]:
        arrays = {"center": self.center, "scale": self.scale, "location": self.location,
                  "precision": self.precision}
        return {"columns": self.columns, "threshold": self.threshold}, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> MahalanobisDetector:
        return cls(list(params["columns"]), arrays["center"], arrays["scale"],
                   arrays["location"], arrays["precision"], float(params["threshold"]))


class IsolationForestDetector:
    """scikit-learn's IsolationForest; refitted at load time from the stored fit rows.

    A forest is not plain parameters, so instead of pickling it the fit rows and the seed are
    stored and the (deterministic) fit is repeated when the monitors are loaded.
    """

    kind: ClassVar[str] = "isolation_forest"

    def __init__(self, columns: list[str], rows: np.ndarray, threshold: float = np.inf) -> None:
        self.columns, self.rows, self.threshold = columns, rows, threshold
        self._select = ColumnSelector(columns)
        self.forest = IsolationForest(n_estimators=200, random_state=0).fit(rows)
        self._medians = np.median(rows, axis=0) if len(rows) else np.zeros(len(columns))

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> IsolationForestDetector:
        columns = numeric_columns(frame)
        return cls(columns, numeric_matrix(frame, columns))

    @classmethod
    def fit_calibrated(cls, frame: pd.DataFrame, folds: list[np.ndarray]
                       ) -> tuple[IsolationForestDetector, np.ndarray]:
        """The detector fitted on all rows, and each row in ``folds`` scored by a forest
        fitted without that fold."""
        columns = numeric_columns(frame)
        values = numeric_matrix(frame, columns)
        scores = np.full(len(values), np.nan)
        for fold in folds:
            rest = np.ones(len(values), dtype=bool)
            rest[fold] = False
            scores[fold] = cls(columns, values[rest]).score(frame.iloc[fold])
        return cls(columns, values), scores

    def score(self, frame: pd.DataFrame, values: np.ndarray | None = None) -> np.ndarray:
        raw = self._select.raw(frame, values)
        if np.isnan(raw).any():  # a missing value counts as the median: typical
            raw = np.where(np.isnan(raw), self._medians, raw)
        result: np.ndarray = -self.forest.score_samples(finite(raw))
        return result

    def state(self) -> tuple[dict[str, Any], Arrays]:
        return {"columns": self.columns, "threshold": self.threshold}, {"rows": self.rows}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: Arrays) -> IsolationForestDetector:
        return cls(list(params["columns"]), arrays["rows"], float(params["threshold"]))


def _standardised(values: np.ndarray) -> np.ndarray:
    """The varying columns, centred and scaled to unit variance."""
    scale = values.std(axis=0)
    varying = scale > 0
    standard: np.ndarray = (values[:, varying] - values.mean(axis=0)[varying]) / scale[varying]
    return standard


def _shrinkage(values: np.ndarray) -> float:
    """The Ledoit-Wolf shrinkage amount of the standardised varying columns."""
    return float(LedoitWolf().fit(_standardised(values)).shrinkage_)


def _robust_support(values: np.ndarray) -> np.ndarray:
    """The rows the Minimum Covariance Determinant keeps (all when it cannot be computed)."""
    standard = _standardised(values)
    with warnings.catch_warnings():
        # MCD warns when the robust covariance is near-singular; we fall back below
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            support: np.ndarray = MinCovDet(random_state=0).fit(standard).support_
        except ValueError:
            support = np.ones(len(values), dtype=bool)
    return support


OUTLIER_DETECTORS: dict[str, Any] = {
    MahalanobisDetector.kind: MahalanobisDetector,
    IsolationForestDetector.kind: IsolationForestDetector,
}
"""Outlier detector kind → class."""
