"""The payload log's storage format: one row per written batch of requests, field by field.

A flush writes a few hundred requests at once. Stored one row each, every request paid for
its own JSON documents, its own bound values and four B-tree entries; the database work was
most of monitoring's cost per request. A batch of requests of one model version is instead
one ``gb_payload_batches`` row whose body holds each field as one list (request ids, times,
inputs, outputs, annotations...), encoded in one call and compressed, plus one slim
``gb_payload_requests`` row per request (its id, its batch, its position) so that feedback
finds a request by id. Measured in a tight loop on SQLite (digits, flushes of 175 requests):
14-19 µs of CPU per request before, 9.4-10.7 µs now, of which the request loop's share
(the encoding) went from 8-10 µs to 3.3-3.7 µs; a request takes ~140 bytes of the store in
all, against ~620.

The body is JSON (orjson: numpy arrays and datetimes are written natively) compressed with
zlib, so anything can read it. Its ``"format"`` names this layout, so a later one can be told
apart.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ..errors import GreenbuttonError

T = TypeVar("T")

FORMAT = 1
"""The body layout written here."""

FIELDS = ("request_ids", "endpoints", "received_at", "latency_s", "has_outlier", "columns",
          "data", "predictions", "annotations")
"""The per-request lists of a body, each as long as the batch (``columns``: an index into
the body's ``column_sets``, the keys of :mod:`.input_columns`)."""

COMPRESSION_LEVEL = 1
"""zlib's fastest level: about 1.7 µs of CPU per digits request (~440 bytes of JSON), in the
writer's thread (zlib releases the interpreter lock)."""


class UnreadableBatch(GreenbuttonError):
    """A stored batch body is not in a layout this version reads."""


@dataclass(frozen=True)
class Requests:
    """Logged requests of one model version, field by field (request ``i`` is item ``i`` of
    each list): what a batch stores."""

    request_ids: list[str]
    endpoints: list[str]
    received_at: list[datetime.datetime]
    latency_s: list[float]
    has_outlier: list[bool]
    inputs: list[Mapping[str, Any]]
    """``{"columns": names, "data": rows}`` per request (pandas' split orientation)."""
    predictions: list[Any]
    annotations: list[Any]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]]) -> Requests:
        """The requests of payload rows (dicts with the ``gb_predictions`` columns)."""
        return cls([r["request_id"] for r in rows], [r["endpoint"] for r in rows],
                   [r["received_at"] for r in rows], [r["latency_s"] for r in rows],
                   [r["has_outlier"] for r in rows], [r["inputs"] for r in rows],
                   [r["predictions"] for r in rows], [r["annotations"] for r in rows])


def encode(requests: Requests, column_keys: Sequence[str], default: Any, option: int) -> bytes:
    """The JSON of a batch whose inputs' column sets are ``column_keys`` (one per request);
    ``default`` and ``option`` are orjson's (the store's JSON settings). Not compressed:
    :func:`pack` does that where the interpreter lock need not be held."""
    sets: dict[str, int] = {}
    columns = [sets.setdefault(key, len(sets)) for key in column_keys]
    return orjson.dumps({
        "format": FORMAT, "column_sets": list(sets), "columns": columns,
        "request_ids": requests.request_ids, "endpoints": requests.endpoints,
        "received_at": [as_utc(moment) for moment in requests.received_at],
        "latency_s": requests.latency_s, "has_outlier": requests.has_outlier,
        "data": [entry["data"] for entry in requests.inputs],
        "predictions": requests.predictions, "annotations": requests.annotations,
    }, default=default, option=option)


def runs(items: Sequence[T], key: Callable[[T], object], limit: int = 0,
         size: Callable[[T], int] | None = None) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive ``items`` with one ``key`` (a model version:
    one batch each), each of at most ``limit`` in all (0: no limit) by ``size`` (default: 1
    per item), and at least one item."""
    found: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, item in enumerate(items):
        weight = 1 if size is None else size(item)
        if i > start and (key(item) != key(items[start]) or (limit and total + weight > limit)):
            found.append((start, i))
            start, total = i, 0
        total += weight
    if items:
        found.append((start, len(items)))
    return found


def pack(encoded: bytes) -> bytes:
    """An encoded batch as it is stored (zlib)."""
    return zlib.compress(encoded, COMPRESSION_LEVEL)


@dataclass(frozen=True)
class Batch:
    """A decoded batch body: request ``i``'s fields are item ``i`` of each list."""

    fields: dict[str, list[Any]]
    column_sets: list[str]

    def __len__(self) -> int:
        return len(self.fields["request_ids"])

    def request_id(self, i: int) -> str:
        return str(self.fields["request_ids"][i])

    def received_at(self, i: int) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.fields["received_at"][i])

    def columns_key(self, i: int) -> str:
        return str(self.column_sets[self.fields["columns"][i]])

    def value(self, name: str, i: int) -> Any:
        return self.fields[name][i]


def decode(body: bytes) -> Batch:
    """A stored body (see :func:`pack`), checked to be a layout this version reads."""
    try:
        parsed = orjson.loads(zlib.decompress(body))
    except (zlib.error, orjson.JSONDecodeError) as error:
        raise UnreadableBatch(f"payload batch body is not compressed JSON: {error}") from None
    if not isinstance(parsed, dict) or parsed.get("format") != FORMAT:
        found = parsed.get("format") if isinstance(parsed, dict) else type(parsed).__name__
        raise UnreadableBatch(f"payload batch body has format {found!r}; this greenbutton "
                              f"reads format {FORMAT}")
    lengths = {len(parsed.get(name) or ()) for name in FIELDS}
    if len(lengths) != 1:
        raise UnreadableBatch("payload batch body's fields differ in length")
    return Batch({name: parsed[name] for name in FIELDS}, list(parsed["column_sets"]))


def utc_now() -> datetime.datetime:
    """The current time in UTC."""
    return datetime.datetime.now(datetime.UTC)


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC; a naive time is taken to be UTC (SQLite gives back stored times
    without their zone, written in UTC)."""
    if moment.tzinfo is datetime.UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)
