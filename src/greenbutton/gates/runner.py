"""``SandboxedGateRunner``: a version's gates, run on a copy of it in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import MlflowSettings, Settings
from ..errors import InvalidInput
from ..sandbox.runner import Sandbox, SandboxRun
from ..store.governance_records import GateOutcome
from .spec import CONFORMANCE_TAG, GATES_TAG, parse_gates

SANDBOX_GATE = "sandbox"
"""The outcome recording how the model's code was isolated (evidence for reviewers)."""


def version_tags(where: MlflowSettings, name: str, version: int) -> dict[str, str]:
    """The version's MLflow tags (one registry call; nothing is downloaded)."""
    from mlflow import MlflowClient

    client = MlflowClient(where.tracking_uri, where.registry_uri)
    return dict(client.get_model_version(name, str(version)).tags or {})


def checked_at_log_time(tags: dict[str, str]) -> GateOutcome | None:
    """The conformance outcome ``log_model`` recorded, when no gate needs the model's code
    (no declared gate, no ``@model_test``); None when the gates must run in the sandbox."""
    try:
        if parse_gates(tags.get(GATES_TAG) or "[]"):
            return None
        recorded = json.loads(tags[CONFORMANCE_TAG])
        if recorded["model_tests"] or not isinstance(recorded["rows"], int):
            return None
    except (KeyError, TypeError, ValueError, InvalidInput):  # logged before the tag, altered
        return None
    return GateOutcome("conformance", True, {"rows": recorded["rows"],
                                             "checked": "by log_model (no gate needs the "
                                                        "model's code: no sandbox run)"})


def fetch_version(where: MlflowSettings, name: str, version: int,
                  folder: Path) -> tuple[Path, str]:
    """Copy ``name`` version ``version``'s artifacts into ``folder`` (nothing is unpickled);
    returns the model's folder and its gates tag."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    client = MlflowClient(where.tracking_uri, where.registry_uri)
    tag = client.get_model_version(name, str(version)).tags.get(GATES_TAG, "[]")
    source = client.get_model_version_download_uri(name, str(version))
    folder.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(folder),
                                                tracking_uri=where.tracking_uri)
    return Path(local), str(tag)


class SandboxedGateRunner:
    """One sandboxed worker per proposal, bounded by ``auth.gate_timeout_s``.

    Usage::

        SandboxedGateRunner(settings, Sandbox(policy_for(settings))).run("digits", 5)
    """

    def __init__(self, settings: Settings, sandbox: Sandbox) -> None:
        self._settings = settings
        self._sandbox = sandbox

    def run(self, model: str, version: int) -> list[GateOutcome]:
        """Every gate's outcome, after the ``sandbox`` one; a crashed, timed-out or refused
        worker is one failed gate with the reason. A version no gate needs to load (see
        ``checked_at_log_time``) gets its recorded conformance outcome, with no worker."""
        try:
            recorded = checked_at_log_time(version_tags(self._settings.mlflow, model, version))
        except Exception as error:  # MLflow's errors: an unknown version fails to load
            return [GateOutcome("load", False, {"reason": f"{type(error).__name__}: "
                                                          f"{error}"[:2000]})]
        if recorded is not None:
            return [recorded]
        with self._sandbox.workdir() as work:
            try:
                local, tag = fetch_version(self._settings.mlflow, model, version, work / "model")
            except Exception as error:  # MLflow's errors: an unfetchable version fails to load
                return [GateOutcome("load", False, {"reason": f"{type(error).__name__}: "
                                                              f"{error}"[:2000]})]
            job = json.dumps({"model_dir": str(local), "gates": tag}).encode()
            done = self._sandbox.run(["-m", "greenbutton.gates.worker"], stdin=job,
                                     workdir=work, timeout_s=self._settings.auth.gate_timeout_s)
        return [_sandbox_outcome(done), *_outcomes(done, self._settings.auth.gate_timeout_s)]


def _sandbox_outcome(done: SandboxRun) -> GateOutcome:
    if done.isolation is None:
        return GateOutcome(SANDBOX_GATE, False, {"reason": "the sandbox did not start: "
                                                 + done.log_tail[-2000:]})
    detail = done.isolation.describe()
    if not done.isolation.is_confined:
        detail["reason"] = "model code could not be isolated: " + "; ".join(
            done.isolation.problems)
    return GateOutcome(SANDBOX_GATE, done.isolation.is_confined, detail)


def _outcomes(done: SandboxRun, budget_s: float) -> list[GateOutcome]:
    if done.is_timed_out:
        return [GateOutcome("worker", False, {"reason": f"gates took over {budget_s:g} s"})]
    if done.is_refused:
        return []  # the sandbox outcome says why
    failure = done.failure()
    try:
        if failure is None:
            return [GateOutcome(r["gate"], bool(r["is_passed"]), dict(r["detail"]))
                    for r in json.loads(done.output)]
    except (ValueError, KeyError, TypeError):
        failure = f"gave no readable answer: {done.log_tail[-2000:]}"
    return [GateOutcome("worker", False, {"reason": f"gate worker {failure}"})]
