"""Schema migrations (alembic, revisions shipped in the package), for every database
greenbutton owns: its store (:data:`STORE`, ``migrations/versions``) and the payload log
(``monitoring/payload_schema.py``), each a :class:`Schema` with its own version table.

``SqlStore`` and ``PayloadStore`` upgrade on open; ``greenbutton doctor`` can report
:func:`current_revision` against :func:`head_revision`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, exc, text

from .engine import create_store_engine, translate_errors
from .init_lock import embedded_folder, initialising

_ENVIRONMENT = Path(__file__).parent / "migrations"  # env.py, shared by every chain
_ATTEMPTS = 5
# alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process
_ALEMBIC_LOCK = threading.Lock()


@dataclass(frozen=True)
class Schema:
    """A chain of revisions and the table recording where a database stands in it."""

    versions: Path
    """The folder of the chain's revision files."""
    version_table: str
    lock_key: int
    """PostgreSQL: replicas starting at once migrate one after the other (transaction-level
    advisory lock on this key)."""


STORE = Schema(_ENVIRONMENT / "versions",
               # not alembic's default name: the store may share a database with MLflow
               "greenbutton_alembic_version",
               0x6762_6D69_6772_6174)  # "gbmigrat"
VERSION_TABLE = STORE.version_table


def _config(schema: Schema = STORE) -> Config:
    config = Config()
    # configparser interpolates '%', which may appear in an install path
    config.set_main_option("script_location", str(_ENVIRONMENT).replace("%", "%%"))
    config.set_main_option("version_locations", str(schema.versions).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["version_table"] = schema.version_table
    return config


def head_revision(schema: Schema = STORE) -> str:
    """The newest revision of ``schema`` shipped with this greenbutton."""
    head = ScriptDirectory.from_config(_config(schema)).get_current_head()
    assert head is not None
    return head


def current_revision(uri: str, schema: Schema = STORE) -> str | None:
    """The revision the database at ``uri`` is at; ``None`` when it was never migrated."""
    engine = create_store_engine(uri)
    try:
        return engine_revision(engine, schema)
    finally:
        engine.dispose()


def upgrade(uri: str, schema: Schema = STORE) -> str:
    """Migrate the database at ``uri`` to the head revision and return it."""
    engine = create_store_engine(uri)
    try:
        return upgrade_engine(engine, schema)
    finally:
        engine.dispose()


def engine_revision(engine: Engine, schema: Schema = STORE) -> str | None:
    """The revision of the database behind ``engine``."""
    with translate_errors(), engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": schema.version_table})
        return context.get_current_revision()


def upgrade_engine(engine: Engine, schema: Schema = STORE) -> str:
    """Migrate the database behind ``engine`` to head; safe when several processes race (a
    SQLite file is migrated under its folder's initialisation lock, see :mod:`.init_lock`)."""
    head = head_revision(schema)
    if engine_revision(engine, schema) == head:
        return head
    with initialising(embedded_folder(engine.url.render_as_string(hide_password=True))):
        return _upgrade(engine, head, schema)


def _upgrade(engine: Engine, head: str, schema: Schema) -> str:
    for attempt in range(_ATTEMPTS):
        if engine_revision(engine, schema) == head:
            return head
        try:
            with _ALEMBIC_LOCK, engine.begin() as connection:
                if connection.dialect.name == "postgresql":  # the others wait, then find head
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": schema.lock_key})
                config = _config(schema)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            return head
        except exc.SQLAlchemyError:
            # another process migrating at the same moment: look again after a pause
            if attempt == _ATTEMPTS - 1:
                with translate_errors():
                    raise
            time.sleep(0.05 * (attempt + 1))
    return head
