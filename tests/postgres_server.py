"""A real PostgreSQL server for the store suites: started once per session, on demand.

Uses the binaries of Debian's ``postgresql`` package (``make test-deps`` installs it) or any
``initdb`` on the PATH; the cluster lives in a temporary folder, listens on 127.0.0.1 on a
free port, and runs as the ``postgres`` user when the suite runs as root (initdb refuses root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = "GREENBUTTON_TEST_STORE_URI"


def find_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``, newest Debian version first."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0, reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return argv if owner is None else ["runuser", "-u", owner, "--", *argv]


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """``postgresql://…`` of a fresh server (or ``GREENBUTTON_TEST_STORE_URI`` if set)."""
    if os.environ.get(ENV):
        yield os.environ[ENV]
        return
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL binaries not found: run `make test-deps`")
    owner = None
    if os.geteuid() == 0:
        try:
            owner_entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL as")
        owner = owner_entry.pw_name
    folder = Path(tempfile.mkdtemp(prefix="greenbutton-pg-"))
    data = folder / "data"
    if owner is not None:
        os.chown(folder, owner_entry.pw_uid, owner_entry.pw_gid)
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                              "greenbutton", "--no-sync", "-E", "UTF8"], owner), **run)
    options = f"-h 127.0.0.1 -p {port} -k {folder} -F"
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                              str(folder / "log"), "-w", "start"], owner), **run)
    try:
        import psycopg

        with psycopg.connect(f"postgresql://greenbutton@127.0.0.1:{port}/postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE greenbutton_test")
        uri = f"postgresql://greenbutton@127.0.0.1:{port}/greenbutton_test"
        os.environ[ENV] = uri
        yield uri
    finally:
        os.environ.pop(ENV, None)
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "stop"], owner), check=False, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server_uri: str, prefix: str = "t") -> str:
    """The URI of a new, empty database on the server at ``server_uri`` (each test its own)."""
    from sqlalchemy import text

    from greenbutton.store.engine import create_store_engine

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_store_engine(server_uri)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_uri.rsplit("/", 1)[0] + f"/{name}"
