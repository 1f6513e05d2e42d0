"""``greenbutton doctor``: is the audit log whole and sealed, and do the stage table and
MLflow's aliases say what the governed lifecycle says? (Reports only; the running
controller puts drift back.)"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..config import Settings
from ..store.migrate import current_revision, head_revision

if TYPE_CHECKING:
    from .checks import Finding


def check_integrity(settings: Settings) -> list[Finding]:
    """Audit log (chain, seal, anchors), stage rows and MLflow aliases against the log."""
    from ..governance.audit import verify_chain
    from ..governance.integrity import LIFECYCLE_ACTIONS, governed_stages, stage_drift
    from ..registry import Registry
    from ..registry.tracking import open_mlflow
    from ..store import open_store
    from ..store.audit_seal import AuditSeal
    from .checks import Finding

    if settings.store.uri.startswith("memory:") or current_revision(
            settings.store.uri) != head_revision():
        return []  # check_store has said what to do first
    key_file = settings.auth.audit_key_file
    seal = AuditSeal.open(key_file) if key_file and os.access(key_file, os.R_OK) else None
    store = open_store(settings.store.uri)
    try:
        audit = store.governance_store()
        report = verify_chain(audit, seal=seal, anchors=seal.anchors() if seal else [])
        how = "sealed" if seal else f"chain only: the audit key {key_file} is not readable here"
        if not report.is_intact:
            return [Finding("audit", False, f"BROKEN at entry {report.broken_seq}: "
                            f"{report.problem}; the controller changes nothing until it is "
                            "looked into")]
        findings = [Finding("audit", True, f"{report.checked} entries intact ({how})")]
        governed = governed_stages(audit.audit_entries(actions=LIFECYCLE_ACTIONS), seal)
        drift = stage_drift(store.list_states(), governed)
        findings.append(Finding("lifecycle", not drift, "stage rows match the audit log" if
                                not drift else "changed behind greenbutton's back: " + "; ".join(
                                    f"{d.model} v{d.version} is {d.stored}, governed "
                                    f"{d.governed}" for d in drift)))
        aliases = Registry(open_mlflow(settings.mlflow), store).mirror_drift()
        findings.append(Finding("aliases", not aliases, "MLflow aliases match the lifecycle"
                                if not aliases else "changed behind greenbutton's back: "
                                + "; ".join(d.describe() for d in aliases)))
        return findings
    finally:
        store.close()
