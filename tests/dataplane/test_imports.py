"""``greenbutton serve`` imports only what serving needs: its cold start is mostly imports."""

from __future__ import annotations

import subprocess
import sys

SERVE_IMPORTS = """
import sys
import greenbutton.cli.main, greenbutton.dataplane.process, greenbutton.wiring
print(" ".join(sorted(name for name in sys.argv[1:] if name in sys.modules)))
"""
NOT_FOR_SERVING = (
    "shap",  # /explain builds its explainer on first use
    "sklearn",  # the explainers' estimators, the monitors: imported when a model needs them
    "greenbutton.explain.explainers",
    "greenbutton.explain.estimators",
    "greenbutton.controller",  # `greenbutton up`
    "greenbutton.controlplane",
    "greenbutton.store.governance_sql",  # endpoint auth, only when enabled
    "greenbutton.governance.client",  # governance commands (httpx)
    "mlflow.store.tracking.sqlalchemy_store",  # the prefetch helper resolves the model URI
)


def test_serve_imports_nothing_it_does_not_need() -> None:
    done = subprocess.run([sys.executable, "-c", SERVE_IMPORTS, *NOT_FOR_SERVING],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == []
