"""How payload rows are written: JSON columns through orjson, and multi-row inserts."""

from __future__ import annotations

import datetime
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Table
from sqlalchemy.engine import Dialect


class BulkInsert:
    """Many rows in a few multi-row ``INSERT … VALUES (…), (…)`` statements.

    A flush logs a few hundred requests, each a ``gb_payload_requests`` row of three plain
    values (text and integers: no bind processing). SQLAlchemy's executemany spends ~10 µs of
    Python per row, and the driver releases and retakes the interpreter lock for every row;
    here a statement carries up to ``rows_per_statement`` rows.
    """

    MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
    """Positional placeholder per DBAPI paramstyle (sqlite3: qmark; psycopg: pyformat)."""

    def __init__(self, table: Table, dialect: Dialect, mark: str,
                 rows_per_statement: int = 500) -> None:
        self.names = [c.name for c in table.columns]
        quote = dialect.identifier_preparer.quote
        self.head = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in self.names)})"
                     " VALUES ")
        self.group = "(" + ", ".join([mark] * len(self.names)) + ")"
        self.rows_per_statement = rows_per_statement

    @classmethod
    def for_dialect(cls, table: Table, dialect: Dialect) -> BulkInsert | None:
        """A bulk insert for ``dialect``, or None when its paramstyle is not positional."""
        mark = cls.MARKS.get(dialect.paramstyle)
        return cls(table, dialect, mark) if mark is not None else None

    def statements(self, rows: Sequence[Sequence[Any]]
                   ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """(SQL, parameters) pairs inserting ``rows`` (values in the table's column order)."""
        for start in range(0, len(rows), self.rows_per_statement):
            chunk = rows[start:start + self.rows_per_statement]
            yield (self.head + ", ".join([self.group] * len(chunk)),
                   tuple(itertools.chain.from_iterable(chunk)))


JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_json(value: Any) -> str:
    """A JSON column's text: numpy arrays and scalars written natively (NaN → null)."""
    return orjson.dumps(value, default=plain, option=JSON_OPTIONS).decode()


def decode_json(text: str | bytes) -> Any:
    """A JSON column's value: orjson (a fifth of the stdlib's time; export reads millions),
    and the stdlib for the NaN and Infinity that versions before orjson wrote, which orjson
    refuses. (orjson reads an integer beyond 64 bits as a float; :func:`encode_json` never
    writes one, it refuses them.)"""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def plain(value: Any) -> Any:
    # orjson calls this for what it cannot write itself: object or non-contiguous arrays,
    # pandas containers and timestamps
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if hasattr(value, "to_numpy"):
        return value.to_numpy()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
