"""The explanation worker: ``python -m greenbutton.explain.worker ANSWER_FD``, run in the
sandbox on a copy of the model. Reads the job on stdin (see ``explain/report.py``) and answers
``{"text", "png"}`` (the PNG in base64) or ``{"error": {"message", "field"}}``."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import ExplainSettings
from ..errors import InvalidInput
from .report import explain_row


def main() -> int:
    """Entry point of the worker process."""
    job: dict[str, Any] = json.loads(sys.stdin.read())
    answer: dict[str, Any]
    try:
        text, png = explain_row(
            Path(job["model_dir"]), str(job["label"]), int(job["row"]), output=job["output"],
            is_picture_wanted=bool(job["is_picture_wanted"]),
            settings=ExplainSettings.model_validate(job["explain"]))
        answer = {"text": text, "png": base64.b64encode(png).decode() if png else None}
    except InvalidInput as error:
        answer = {"error": {"message": error.message, "field": error.field}}
    with os.fdopen(int(sys.argv[-1]), "w") as out:
        json.dump(answer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
