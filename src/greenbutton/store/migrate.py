"""Schema migrations of greenbutton's store (alembic, revisions shipped in the package).

``SqlStore`` upgrades on open; ``greenbutton doctor`` can report :func:`current_revision`
against :func:`head_revision`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, exc, text

from .engine import create_store_engine, translate_errors
from .init_lock import embedded_folder, initialising

# not alembic's default name: the store may share a database with MLflow, which has its own
VERSION_TABLE = "greenbutton_alembic_version"
_SCRIPT_LOCATION = Path(__file__).parent / "migrations"
_ATTEMPTS = 5
# alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process
_ALEMBIC_LOCK = threading.Lock()
# PostgreSQL: replicas starting at once migrate one after the other (transaction advisory lock)
_MIGRATION_LOCK_KEY = 0x6762_6D69_6772_6174  # "gbmigrat"


def _config() -> Config:
    config = Config()
    # configparser interpolates '%', which may appear in an install path
    config.set_main_option("script_location", str(_SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest revision shipped with this greenbutton."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(uri: str) -> str | None:
    """The revision the database at ``uri`` is at; ``None`` when it was never migrated."""
    engine = create_store_engine(uri)
    try:
        return engine_revision(engine)
    finally:
        engine.dispose()


def upgrade(uri: str) -> str:
    """Migrate the database at ``uri`` to the head revision and return it."""
    engine = create_store_engine(uri)
    try:
        return upgrade_engine(engine)
    finally:
        engine.dispose()


def engine_revision(engine: Engine) -> str | None:
    """The revision of the database behind ``engine``."""
    with translate_errors(), engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade_engine(engine: Engine) -> str:
    """Migrate the database behind ``engine`` to head; safe when several processes race (a
    SQLite file is migrated under its folder's initialisation lock, see :mod:`.init_lock`)."""
    head = head_revision()
    if engine_revision(engine) == head:
        return head
    with initialising(embedded_folder(engine.url.render_as_string(hide_password=True))):
        return _upgrade(engine, head)


def _upgrade(engine: Engine, head: str) -> str:
    for attempt in range(_ATTEMPTS):
        if engine_revision(engine) == head:
            return head
        try:
            with _ALEMBIC_LOCK, engine.begin() as connection:
                if connection.dialect.name == "postgresql":  # the others wait, then find head
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _MIGRATION_LOCK_KEY})
                config = _config()
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
