"""``greenbutton doctor``: check every configured backend and say exactly what is wrong.

Usage::

    findings = check_all(settings)      # [Finding(backend="store", ok=True, message=...), ...]
    print(render(findings))             # one line per check; exit status 1 if any failed

Checks: greenbutton's store (reachable, schema at this release's head, privileges), MLflow
tracking (reachable, schema current for a database URI), the artifact root (a probe file is
written, listed, read back and deleted through MLflow's own artifact repository, so S3 needs
exactly what MLflow needs), the deploy target (local: its folders; Kubernetes: API reachable
and the RBAC the controller needs), who leads the controllers on a shared store, and the
integrity of the audit log, the stage table and MLflow's aliases.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ..config import Settings
from ..store.engine import normalize_uri
from ..store.migrate import engine_revision, head_revision
from .integrity import check_integrity

_TIMEOUT_S = 5


@dataclass(frozen=True)
class Finding:
    """One check's verdict; ``message`` says what is wrong and how to fix it."""

    backend: str
    ok: bool
    message: str


def check_all(settings: Settings) -> list[Finding]:
    """Every check, in the order a platform engineer would fix them."""
    checks = [check_store, check_leader, check_mlflow, check_artifacts, check_target,
              check_integrity]
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check(settings))
        except Exception as error:  # a check that crashes is itself a finding, never a traceback
            findings.append(Finding(check.__name__.removeprefix("check_"), False,
                                    f"check failed unexpectedly: {type(error).__name__}: {error}"))
    return findings


def render(findings: list[Finding]) -> str:
    """One line per finding: ``ok`` or ``FAIL``, the backend, the message."""
    lines = [f"{'ok  ' if f.ok else 'FAIL'}  {f.backend:<9} {f.message}" for f in findings]
    failed = sum(not f.ok for f in findings)
    lines.append(f"{failed} problem(s) found" if failed else "all backends ok")
    return "\n".join(lines)


def run(settings: Settings) -> int:
    """Print the findings; 1 if anything is wrong."""
    findings = check_all(settings)
    print(render(findings))
    return 1 if any(not f.ok for f in findings) else 0


def safe_uri(uri: str) -> str:
    """``uri`` with any password hidden."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:
        return uri.split("@")[-1] if "@" in uri else uri


def _engine(uri: str) -> Any:
    url = normalize_uri(uri)
    args = {"connect_timeout": _TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
    return create_engine(url, connect_args=args)


def check_store(settings: Settings) -> list[Finding]:
    """greenbutton's store: reachable, schema at head, allowed to read, write and migrate."""
    uri = settings.store.uri
    if uri.startswith("memory:"):
        return [Finding("store", True, "memory:// (nothing persists; tests only)")]
    shown, head = safe_uri(uri), head_revision()
    url = normalize_uri(uri)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return [Finding("store", True, f"{shown} not created yet (`greenbutton up` creates it)")]
    engine = _engine(uri)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return [Finding("store", False, f"{shown} is unreachable: {_first_line(error)}")]
    try:
        revision = engine_revision(engine)
        findings = [_schema_finding(shown, revision, head)]
        if engine.dialect.name == "postgresql":
            findings += _postgres_privileges(engine, shown)
        elif engine.dialect.name == "sqlite" and engine.url.database:
            path = Path(engine.url.database)
            if not os.access(path if path.exists() else path.parent, os.W_OK):
                findings.append(Finding("store", False, f"{path} is not writable by this user"))
        return findings
    finally:
        engine.dispose()


def _schema_finding(shown: str, revision: str | None, head: str) -> Finding:
    if revision == head:
        return Finding("store", True, f"{shown} reachable, schema {head} (current)")
    if revision is None:
        return Finding("store", False, f"{shown} has no greenbutton schema yet (this release "
                       f"needs {head}): start `greenbutton up` once, it migrates on start")
    from alembic.script import ScriptDirectory

    from ..store.migrate import _config

    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if revision in known:
        return Finding("store", False, f"{shown} schema is at {revision}, this release needs "
                       f"{head}: start `greenbutton up` (migrations run on start)")
    return Finding("store", False, f"{shown} schema is at {revision}, unknown to this release "
                   f"(head {head}): the database was migrated by a newer greenbutton")


def _postgres_privileges(engine: Any, shown: str) -> list[Finding]:
    """Can the role create tables (migrations) and read/write every greenbutton table?"""
    with engine.connect() as connection:
        role = connection.execute(text("SELECT current_user")).scalar()
        can_create = connection.execute(text(
            "SELECT has_schema_privilege(current_schema(), 'CREATE')")).scalar()
        missing = connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename IN (SELECT unnest(CAST(:tables AS text[])))"
            " AND NOT has_table_privilege(format('%I.%I', schemaname, tablename),"
            " 'SELECT, INSERT, UPDATE, DELETE')"), {"tables": _store_tables()}).scalars().all()
    findings = []
    if not can_create:
        findings.append(Finding("store", False, f"role {role!r} may not CREATE in the schema of "
                                f"{shown}: migrations will fail (GRANT CREATE ON SCHEMA …)"))
    if missing:
        findings.append(Finding("store", False, f"role {role!r} lacks SELECT/INSERT/UPDATE/DELETE"
                                f" on {', '.join(sorted(missing))}"))
    if not findings:
        findings.append(Finding("store", True, f"role {role!r} may migrate and read/write"))
    return findings


def _store_tables() -> list[str]:
    from ..store import governance_schema  # noqa: F401  (registers its tables in ``metadata``)
    from ..store.deployment_sql import deployment_specs
    from ..store.migrate import VERSION_TABLE
    from ..store.schema import metadata

    return sorted({*metadata.tables, deployment_specs.name, VERSION_TABLE})


def check_leader(settings: Settings) -> list[Finding]:
    """On a shared (PostgreSQL) store: which replica runs the reconcile loop right now."""
    if not settings.store.uri.startswith("postgresql"):
        return []
    from ..controller.leader import lock_key

    key = lock_key(settings.controller.target_uri)
    engine = _engine(settings.store.uri)
    try:
        with engine.connect() as connection:
            holder = connection.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"),
                {"key": key}).scalar()
    except Exception:  # the store check already says why the database is unreachable
        return []
    finally:
        engine.dispose()
    if holder is None:
        return [Finding("leader", True, "no control plane leads right now (none running?)")]
    return [Finding("leader", True, f"reconcile loop run by {holder}")]


def check_mlflow(settings: Settings) -> list[Finding]:
    """MLflow tracking: a server answers, or its database is reachable with a current schema."""
    uri = settings.mlflow.tracking_uri
    shown = safe_uri(uri)
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            answer = httpx.get(uri.rstrip("/") + "/health", timeout=_TIMEOUT_S)
        except httpx.HTTPError as error:
            return [Finding("mlflow", False, f"tracking server {shown} unreachable: {error}")]
        if answer.status_code != 200:
            return [Finding("mlflow", False, f"tracking server {shown} /health answered "
                            f"{answer.status_code}")]
        return [Finding("mlflow", True, f"tracking server {shown} answers")]
    if uri.startswith("file:") or "://" not in uri:
        return [Finding("mlflow", True, f"file store {shown}")]
    url = make_url(uri)
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        return [Finding("mlflow", False, f"{shown}: MLflow would use psycopg2, which is not "
                        "installed; write the URI as postgresql+psycopg://…")]
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return [Finding("mlflow", True, f"{shown} not created yet (MLflow creates it)")]
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version

    engine = create_engine(url, connect_args={"connect_timeout": _TIMEOUT_S}
                           if url.get_backend_name() == "postgresql" else {})
    try:
        revision = _get_schema_version(engine)  # type: ignore[no-untyped-call]
    except Exception as error:
        return [Finding("mlflow", False, f"{shown} is unreachable: {_first_line(error)}")]
    finally:
        engine.dispose()
    head = _get_latest_schema_revision()  # type: ignore[no-untyped-call]
    if revision is None:
        return [Finding("mlflow", True, f"{shown} reachable, empty (MLflow creates its tables "
                        "on first use)")]
    if revision != head:
        return [Finding("mlflow", False, f"{shown} MLflow schema at {revision}, this MLflow "
                        f"needs {head}: back up, then `mlflow db upgrade <uri>`")]
    return [Finding("mlflow", True, f"{shown} reachable, MLflow schema {head} (current)")]


def check_artifacts(settings: Settings) -> list[Finding]:
    """Write, list, read back and delete a probe file under the artifact root, as MLflow does."""
    root = settings.mlflow.artifact_root
    if root.startswith("s3:") and importlib.util.find_spec("boto3") is None:
        return [Finding("artifacts", False, f"{root}: boto3 is not installed "
                        "(pip install 'greenbutton[s3]')")]
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    probe = f".greenbutton-doctor/{uuid.uuid4().hex}"
    body = uuid.uuid4().hex
    try:
        repository = get_artifact_repository(f"{root.rstrip('/')}/{probe}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "probe.txt"
            path.write_text(body)
            repository.log_artifact(str(path))  # type: ignore[no-untyped-call]
            listed = [f.path for f in repository.list_artifacts()]
            (Path(folder) / "back").mkdir()
            back_path = repository.download_artifacts(  # type: ignore[no-untyped-call]
                "probe.txt", folder + "/back")
            back = Path(back_path).read_text()
        try:
            repository.delete_artifacts()  # type: ignore[no-untyped-call]
        except NotImplementedError:  # some MLflow artifact repositories cannot delete
            pass
    except Exception as error:
        from .storage import explain_storage_error

        return [Finding("artifacts", False, f"{root}: {explain_storage_error(error)}")]
    if "probe.txt" not in listed or back != body:
        return [Finding("artifacts", False, f"{root}: a file written could not be read back")]
    return [Finding("artifacts", True, f"{root} writable and readable")]


def check_target(settings: Settings) -> list[Finding]:
    """The deploy target: where the controller puts serving instances."""
    uri = settings.controller.target_uri
    scheme = uri.partition(":")[0]
    if scheme == "local":
        run = settings.home / "run"
        folder = run if run.exists() else settings.home
        while not folder.exists():
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            return [Finding("target", False, f"local://: {folder} is not writable")]
        adopt = "" if Path("/proc/self/environ").exists() else " (no /proc: no adoption)"
        return [Finding("target", True, f"local:// under {settings.home}{adopt}")]
    if scheme == "kubernetes":
        from .kubernetes import check_kubernetes

        return check_kubernetes(uri)
    return [Finding("target", False, f"unknown deploy target {uri!r}")]


def _first_line(error: BaseException) -> str:
    text_ = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text_[0] if text_ else ''}"
