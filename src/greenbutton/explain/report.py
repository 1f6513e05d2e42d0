"""``greenbutton explain``: explain one reference row of a logged model, as text and a picture.

The model's code runs in the sandbox (:mod:`greenbutton.sandbox`), on a copy of the model:
whoever looks at a proposed version's explanation does not lend it their credentials.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExplainSettings, Settings
from ..errors import GreenbuttonError, InvalidInput
from ..sandbox.policy import policy_for
from ..sandbox.runner import Sandbox
from .explanation import ExplainedModel
from .picture import render_bars, render_heatmap

TOP_FEATURES = 5


def explain_reference_row(
    settings: Settings, model_uri: str, row: int, *, png: Path | None, output: str | None
) -> str:
    """Explain row ``row`` of the model's reference data in the sandbox; write the heatmap to
    ``png``. Returns the text summary printed by the CLI. ``output`` picks the explained class
    (default: the predicted one)."""
    import mlflow.artifacts

    sandbox = Sandbox(policy_for(settings))
    with sandbox.workdir() as work:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(work / "model"),
            tracking_uri=settings.mlflow.tracking_uri)
        job = {"model_dir": local, "label": model_uri, "row": row, "output": output,
               "is_picture_wanted": png is not None, "explain": settings.explain.model_dump()}
        done = sandbox.run(["-m", "greenbutton.explain.worker"],
                           stdin=json.dumps(job).encode(), workdir=work,
                           timeout_s=settings.explain.timeout_s * 10)
    failure = done.failure()
    if failure is not None:
        raise GreenbuttonError(f"explaining {model_uri} failed: {failure}")
    answer: dict[str, Any] = json.loads(done.output)
    if "error" in answer:
        raise InvalidInput(answer["error"]["message"], field=answer["error"]["field"])
    text = str(answer["text"])
    if png is not None and answer.get("png"):
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(answer["png"]))
        text += f"\nwrote {png}"
    return text


def explain_row(folder: Path, label: str, row: int, *, output: str | None,
                is_picture_wanted: bool, settings: ExplainSettings) -> tuple[str, bytes | None]:
    """Explain row ``row`` of the reference data of the model saved in ``folder`` (in this
    process: the sandbox's worker calls it). Returns the summary and the PNG, if wanted."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(folder))
    model = ExplainedModel(pyfunc, background_rows=settings.background_rows,
                           max_evals=settings.max_evals)
    reference = model.reference()
    if not 0 <= row < len(reference):
        raise InvalidInput(f"--row must be in 0..{len(reference) - 1}", field="row")
    frame = reference.iloc[[row]].reset_index(drop=True)
    explained = model.explain(frame)
    if explained.attributions is None or explained.outputs is None:
        return f"{label} explains itself (model.explain):\n{explained.explanations!r}", None
    prediction = np.asarray(pyfunc.predict(frame)).ravel()[0].item()
    index = _output_index(explained.outputs, output, prediction, explained.attributions.outputs)
    values = explained.attributions.values[0, :, index]
    name = explained.outputs[index]
    lines = [
        f"{label} row {row}: predicted {prediction}; explaining output {name!r} "
        f"({explained.explainer}, {explained.output_space})",
        f"base value {explained.attributions.base_values[0, index]:.4f} + attributions "
        f"{values.sum():.4f} = {explained.attributions.outputs[0, index]:.4f}",
    ]
    columns = [str(c) for c in frame.columns]
    for i in np.argsort(-np.abs(values))[:TOP_FEATURES]:
        lines.append(f"  {columns[i]:>12} = {frame.iloc[0, i]!s:>6}  {values[i]:+.4f}")
    picture = None
    if is_picture_wanted:
        title = f"{label} row {row}: predicted {prediction}, output {name}"
        shape = explained.image_shape
        if shape is None:  # tabular: a bar per feature, labelled with its value
            labels = [f"{c} = {_short(frame.iloc[0, i])}" for i, c in enumerate(columns)]
            picture = render_bars(labels, values, title=title)
        else:
            pixels = frame.to_numpy(dtype=float)[0].reshape(shape)
            picture = render_heatmap(pixels, values.reshape(shape), title=title)
    return "\n".join(lines), picture


def _short(value: Any) -> str:
    """A feature's value as a bar's label shows it: numbers to 4 significant digits."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return f"{value!s:.16}"


def _output_index(labels: list[str], wanted: str | None, prediction: Any, outputs: Any) -> int:
    if wanted is not None:
        if wanted not in labels:
            raise InvalidInput(f"--output must be one of {labels}", field="output")
        return labels.index(wanted)
    if str(prediction) in labels:
        return labels.index(str(prediction))
    return int(np.argmax(outputs[0]))
