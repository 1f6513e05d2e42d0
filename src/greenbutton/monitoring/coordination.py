"""What the processes sharing a payload store agree on: whose turn it is.

Every serving worker and replica of a model version writes to the same payload store; one
of them sends an alert per cooldown (``gb_alerts_sent``) and one tests the drift window per
interval (``gb_drift_tests``), storing the snapshot the others publish. A claim is a row
renewed (or inserted) only when its time is due: a concurrent claimer loses the race and
gets False, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from .payload_batches import as_utc, utc_now
from .payload_schema import alerts_sent, drift_tests


class Coordination:
    """Claims and drift snapshots in the payload store behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim_alert(self, model_name: str, model_version: str | None, rule: str,
                    cooldown_s: float, *, now: datetime.datetime | None = None) -> bool:
        """Whether the caller may send ``rule``'s alert for this version now; if so, the time
        is recorded. Among all the processes sharing the store, one caller per ``cooldown_s``
        gets True: the others see the recorded time (or lose the race to insert it).
        """
        key = {**_version_key(model_name, model_version), "rule": rule}
        return self._claim(alerts_sent, key, "sent_at", cooldown_s, now)

    def claim_drift_test(self, model_name: str, model_version: str | None, interval_s: float,
                         *, now: datetime.datetime | None = None) -> bool:
        """Whether the caller should test this version's drift window now: one caller per
        ``interval_s`` among all the processes sharing the store gets True (as
        :meth:`claim_alert`); the others read the result with :meth:`drift_snapshot`."""
        return self._claim(drift_tests, _version_key(model_name, model_version), "claimed_at",
                           interval_s, now)

    def _claim(self, table: Table, key: dict[str, str], time_column: str, cooldown_s: float,
               now: datetime.datetime | None) -> bool:
        """Renew ``table``'s row at ``key`` if its time is ``cooldown_s`` old, or insert it;
        whether this caller did (a concurrent caller that loses gets False)."""
        now = as_utc(now or utc_now())
        where = _matching(table, key)
        due = table.c[time_column] <= now - datetime.timedelta(seconds=cooldown_s)
        with self.engine.begin() as connection:
            # on PostgreSQL a concurrent claim waits for this row, then finds it not due
            renewed = connection.execute(update(table).where(*where, due)
                                         .values({time_column: now}))
            if renewed.rowcount == 1:
                return True
            try:
                with connection.begin_nested():
                    connection.execute(insert(table).values({**key, time_column: now}))
            except IntegrityError:  # claimed within the cooldown, or a moment ago
                return False
        return True

    def save_drift_snapshot(self, model_name: str, model_version: str | None, newest_id: int,
                            snapshot: dict[str, Any]) -> None:
        """Store a drift test's snapshot (``GET /monitoring``'s body) and the newest payload
        row it tested, for the other processes serving the version."""
        key = _version_key(model_name, model_version)
        where = _matching(drift_tests, key)
        values = {"newest_id": newest_id, "snapshot": snapshot}
        with self.engine.begin() as connection:
            if connection.execute(update(drift_tests).where(*where).values(values)).rowcount:
                return
            try:  # tested without a claim (GET /monitoring?refresh=1 before any interval)
                with connection.begin_nested():
                    connection.execute(insert(drift_tests).values(
                        {**key, **values, "claimed_at": as_utc(utc_now())}))
            except IntegrityError:  # claimed a moment ago by another process
                connection.execute(update(drift_tests).where(*where).values(values))

    def drift_snapshot(self, model_name: str, model_version: str | None
                       ) -> tuple[int, dict[str, Any]] | None:
        """The newest payload row id and snapshot of the version's latest stored drift test."""
        query = select(drift_tests.c.newest_id, drift_tests.c.snapshot).where(
            *_matching(drift_tests, _version_key(model_name, model_version)))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        return int(row[0]), dict(row[1])


def _version_key(model_name: str, model_version: str | None) -> dict[str, str]:
    """A model version as the key columns of the claim tables ("" for no version)."""
    return {"model_name": model_name, "model_version": model_version or ""}


def _matching(table: Table, key: dict[str, str]) -> list[ColumnElement[bool]]:
    """``table``'s rows with these ``key`` column values."""
    return [table.c[name] == value for name, value in key.items()]
