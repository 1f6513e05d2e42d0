"""``greenbutton explain``: explain one reference row of a logged model, as text and a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InvalidInput
from .explanation import ExplainedModel
from .picture import write_heatmap

TOP_FEATURES = 5


def explain_reference_row(
    settings: Settings, model_uri: str, row: int, *, png: Path | None, output: str | None
) -> str:
    """Explain row ``row`` of the model's reference data; write a heatmap to ``png``.

    Returns the text summary printed by the CLI. ``output`` picks the explained class
    (default: the predicted one).
    """
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.registry_uri or settings.mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    model = ExplainedModel(
        pyfunc,
        background_rows=settings.explain.background_rows,
        max_evals=settings.explain.max_evals,
    )
    reference = model.reference()
    if not 0 <= row < len(reference):
        raise InvalidInput(f"--row must be in 0..{len(reference) - 1}", field="row")
    frame = reference.iloc[[row]].reset_index(drop=True)
    explained = model.explain(frame)
    if explained.attributions is None or explained.outputs is None:
        return f"{model_uri} explains itself (model.explain):\n{explained.explanations!r}"
    prediction = np.asarray(pyfunc.predict(frame)).ravel()[0].item()
    index = _output_index(explained.outputs, output, prediction, explained.attributions.outputs)
    values = explained.attributions.values[0, :, index]
    label = explained.outputs[index]
    lines = [
        f"{model_uri} row {row}: predicted {prediction}; explaining output {label!r} "
        f"({explained.explainer}, {explained.output_space})",
        f"base value {explained.attributions.base_values[0, index]:.4f} + attributions "
        f"{values.sum():.4f} = {explained.attributions.outputs[0, index]:.4f}",
    ]
    columns = [str(c) for c in frame.columns]
    for i in np.argsort(-np.abs(values))[:TOP_FEATURES]:
        lines.append(f"  {columns[i]:>12} = {frame.iloc[0, i]!s:>6}  {values[i]:+.4f}")
    if png is not None:
        shape = explained.image_shape or (1, len(columns))
        pixels = frame.to_numpy(dtype=float)[0].reshape(shape)
        title = f"{model_uri} row {row}: predicted {prediction}, output {label}"
        write_heatmap(pixels, values.reshape(shape), png, title=title)
        lines.append(f"wrote {png}")
    return "\n".join(lines)


def _output_index(labels: list[str], wanted: str | None, prediction: Any, outputs: Any) -> int:
    if wanted is not None:
        if wanted not in labels:
            raise InvalidInput(f"--output must be one of {labels}", field="output")
        return labels.index(wanted)
    if str(prediction) in labels:
        return labels.index(str(prediction))
    return int(np.argmax(outputs[0]))
