"""The payload log's column names, stored once per distinct set and referenced from each row.

A logged row's inputs are ``{"columns": names, "data": rows}`` to its callers, but the names of
a 64-feature model are most of each row's bytes and of its cost to write. The store keeps each
set of names once, in ``gb_input_columns``, under a digest of its JSON text, and a row stores
``{"columns_key": key, "data": rows}``. The key is derived from the names alone, so serving
processes and replicas need no coordination: each registers a set (insert-if-absent) in the
transaction of the first rows that use it. Rows written before this kept their names inline
and are read as they are.

The table is not pruned with the payload log: it holds one short row per distinct set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import GreenbuttonError

KEY_CHARS = 32
"""Hex digits of the SHA-256 kept as a key (128 bits: no collision among any real sets)."""

_INSERT_IF_ABSENT: dict[str, Callable[[Table], Any]] = {
    "sqlite": lambda table: sqlite.insert(table).on_conflict_do_nothing(index_elements=["key"]),
    "postgresql": lambda table: postgresql.insert(table).on_conflict_do_nothing(
        index_elements=["key"]),
}


class UnknownColumnSet(GreenbuttonError):
    """A logged row refers to a column set that ``gb_input_columns`` does not hold."""


def column_set_key(names: Sequence[Any]) -> str:
    """The key of a set of column names: the start of the SHA-256 of their JSON text."""
    return hashlib.sha256(orjson.dumps(list(names))).hexdigest()[:KEY_CHARS]


class InputColumns:
    """Converts payload rows' inputs between names inline and names by key, for one store.

    Remembers the sets known to be in ``table`` (committed by this process or read from it):
    only the others are registered with the next write.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._stored: dict[str, list[Any]] = {}

    def keys(self, inputs: Sequence[Mapping[str, Any]]
             ) -> tuple[list[str], dict[str, list[Any]]]:
        """The key of each of payload rows' ``inputs``' column names, and the sets (by key)
        not yet known to be stored, which must be registered in the same transaction as the
        rows.

        Consecutive rows almost always carry the very same list of names (the payload log
        makes one per column index), so a set is hashed only when the list object changes.
        """
        keys: list[str] = []
        new: dict[str, list[Any]] = {}
        last_names: object = None
        key = ""
        for entry in inputs:
            names = entry["columns"]
            if names is not last_names:
                key, last_names = column_set_key(names), names
                if key not in self._stored:
                    new[key] = list(names)
            keys.append(key)
        return keys, new

    def register(self, connection: Connection, sets: dict[str, list[Any]]) -> None:
        """Insert the ``sets`` that are absent, in ``connection``'s transaction; call
        :meth:`remember` once it has committed."""
        if not sets:
            return
        values = [{"key": key, "columns": names} for key, names in sets.items()]
        insert_if_absent = _INSERT_IF_ABSENT.get(connection.dialect.name)
        if insert_if_absent is not None:
            connection.execute(insert_if_absent(self.table), values)
            return
        for value in values:  # other databases: a savepoint per set, a duplicate is skipped
            try:
                with connection.begin_nested():
                    connection.execute(insert(self.table), [value])
            except IntegrityError:
                pass  # another process registered it first: same key, same names

    def remember(self, sets: dict[str, list[Any]]) -> None:
        """Note ``sets`` as stored (their registration has committed)."""
        self._stored.update(sets)

    def inline(self, connection: Connection, inputs: dict[str, Any],
               request_id: str) -> dict[str, Any]:
        """A stored row's ``inputs`` with its names inline (rows that have them: as they are)."""
        key = inputs.get("columns_key")
        if key is None:
            return inputs
        return {"columns": self.names(connection, key, request_id), "data": inputs["data"]}

    def names(self, connection: Connection, key: str, request_id: str) -> list[Any]:
        """The column names stored under ``key`` (a fresh list), for logged request
        ``request_id`` (named in the error when the set is missing)."""
        names = self._stored.get(key)
        if names is None:
            names = connection.execute(select(self.table.c.columns)
                                       .where(self.table.c.key == key)).scalar()
            if names is None:
                raise UnknownColumnSet(f"logged request {request_id!r} refers to column set "
                                       f"{key!r}, which {self.table.name} does not hold")
            self._stored[key] = names
        return list(names)
