"""Explain rows of a loaded pyfunc model: its own ``explain()`` first, else the default explainer.

The background sample is drawn (with a fixed seed) from the reference data that
``greenbutton.log_model`` stored in the model (artifact ``greenbutton_reference``); a model
logged without it falls back to its input example.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidInput

if TYPE_CHECKING:  # scikit-learn is imported when the first default explainer is built
    from .explainers import Attributions, Explainer

REFERENCE_ARTIFACT = "greenbutton_reference"
"""Artifact key of the reference sample, as written by ``greenbutton.packaging``."""
MODEL_EXPLAINER = "model.explain"
"""``explainer`` reported when the model's own ``explain()`` answered."""
_INDEXED_NAME = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class Explained:
    """One explain call's answer, before the transport adds predictions and the request id."""

    explainer: str
    explanations: Any
    output_space: str | None = None
    outputs: list[str] | None = None
    image_shape: tuple[int, int] | None = None
    attributions: Attributions | None = None


class ExplainedModel:
    """A served pyfunc model made explainable; build once per model, call from worker threads."""

    def __init__(self, pyfunc: Any, *, background_rows: int, max_evals: int) -> None:
        self._pyfunc = pyfunc
        self._python_model = _unwrap(pyfunc)
        self._context = getattr(getattr(pyfunc, "_model_impl", None), "context", None)
        self._background_rows = background_rows
        self._max_evals = max_evals
        self._default: Explainer | None = None
        self._columns: list[str] = []
        self._dtypes: dict[str, Any] = {}
        self.has_own_explain = callable(getattr(self._python_model, "explain", None))

    @property
    def explainer_name(self) -> str:
        """The explainer that answers (built on first use for the default ones)."""
        if self.has_own_explain:
            return MODEL_EXPLAINER
        return type(self.default_explainer()).name

    def explain(self, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> Explained:
        """Explain the rows of ``frame`` (already validated against the signature)."""
        if self.has_own_explain:
            return Explained(MODEL_EXPLAINER, self._call_own_explain(frame, params))
        explainer = self.default_explainer()
        attributions = explainer.explain(_numeric(frame))
        columns = [str(c) for c in frame.columns]
        return Explained(
            type(explainer).name,
            render_rows(attributions, columns, explainer.output_labels),
            explainer.output_space,
            explainer.output_labels,
            image_shape(columns),
            attributions,
        )

    def default_explainer(self) -> Explainer:
        """The default explainer for this model's kind, built on first call."""
        if self._default is None:
            from .estimators import find_estimator
            from .explainers import build_default

            background = self.background()
            self._columns = [str(c) for c in background.columns]
            self._dtypes = {str(k): v for k, v in background.dtypes.items()}
            rows = _numeric(background)
            found = find_estimator(self._python_model, rows.shape[1])
            self._default = build_default(
                found, self._predict, rows, self._columns, max_evals=self._max_evals
            )
        return self._default

    def reference(self) -> pd.DataFrame:
        """The reference data logged with the model, else its input example."""
        artifacts = getattr(self._context, "artifacts", None) or {}
        path = artifacts.get(REFERENCE_ARTIFACT)
        frame = pd.read_parquet(path) if path else getattr(self._pyfunc, "input_example", None)
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            raise InvalidInput(
                "the model has no reference data or input example to explain against; "
                "log it with greenbutton.log_model(..., reference_data=...)",
                field="model",
            )
        return frame

    def background(self) -> pd.DataFrame:
        """At most ``background_rows`` reference rows (seeded sample)."""
        frame = self.reference()
        if len(frame) > self._background_rows:
            frame = frame.sample(n=self._background_rows, random_state=0)
        return frame.reset_index(drop=True)

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(rows, columns=self._columns).astype(self._dtypes)
        return np.asarray(self._pyfunc.predict(frame), dtype=float)

    def _call_own_explain(self, frame: pd.DataFrame, params: dict[str, Any] | None) -> Any:
        method = self._python_model.explain
        names = list(inspect.signature(method).parameters)
        args = (self._context, frame) if names and names[0] == "context" else (frame,)
        return method(*args) if params is None else method(*args, params=params)


def render_rows(
    attributions: Attributions, columns: list[str], labels: list[str]
) -> list[dict[str, Any]]:
    """Per row: per output label, its base value, value and attributions keyed by column."""
    rows: list[dict[str, Any]] = []
    for r in range(attributions.values.shape[0]):
        outputs = {
            label: {
                "base_value": float(attributions.base_values[r, o]),
                "value": float(attributions.outputs[r, o]),
                "attributions": dict(
                    zip(columns, attributions.values[r, :, o].tolist(), strict=True)
                ),
            }
            for o, label in enumerate(labels)
        }
        rows.append({"outputs": outputs})
    return rows


def image_shape(columns: list[str]) -> tuple[int, int] | None:
    """(side, side) when the columns look like the pixels of a square image, e.g. pixel_0..63."""
    side = math.isqrt(len(columns))
    if side < 4 or side * side != len(columns):
        return None
    matches = [_INDEXED_NAME.match(c) for c in columns]
    if any(m is None for m in matches) or len({m.group(1) for m in matches if m}) != 1:
        return None
    indices = [int(m.group(2)) for m in matches if m]
    return (side, side) if indices == list(range(len(columns))) else None


def _unwrap(pyfunc: Any) -> Any:
    # a python model (greenbutton's or plain MLflow's), else a flavour's raw model (sklearn)
    for method in ("unwrap_python_model", "get_raw_model"):
        try:
            return getattr(pyfunc, method)()
        except Exception:  # MLflow raises when the flavour has no such model
            continue
    return pyfunc


def _numeric(frame: pd.DataFrame) -> np.ndarray:
    kinds = frame.dtypes.map(pd.api.types.is_numeric_dtype)
    if not bool(kinds.all()):
        names = [str(c) for c, ok in kinds.items() if not ok]
        raise InvalidInput(
            f"the default explainer needs numeric columns, not {names[:3]}; "
            "define explain() on the model class",
            field=f"inputs[0].{names[0]}",
        )
    rows: np.ndarray = frame.to_numpy(dtype=float)
    return rows
