"""The event log's insert, written for the hot path: values go to the driver already in the form
SQLAlchemy would have stored them, without its per-row type processing.

That processing (four `UTCDateTime` columns and the JSON payload per row) cost more than SQLite's
insert itself. Here a row becomes a tuple once; a time the whole batch shares is formatted once.
The values stored are exactly those of an `events.insert()` (tests compare the two).

- SQLite: `executemany` of one `INSERT … ON CONFLICT DO NOTHING`; times as SQLAlchemy's SQLite
  `DATETIME` text (naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`), payload as JSON text.
- PostgreSQL: one statement for the whole group, which also takes the log lock (`log.lock`): the
  rows travel as one array per column (`unnest`), and the insert runs only when the lock's
  suppression version is one the caller checked against. One round trip instead of two (lock, then
  insert) — the writer thread waits for the GIL after each.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.log.lock import LOCK_ROW
from opencdp.store.dialect import json_serializer

COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "received_at",
    "sent_at",
    "original_timestamp",
    "timestamp",
    "payload",
)
_ON_CONFLICT = "ON CONFLICT (source_id, message_id) DO NOTHING"

_SQLITE_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) {_ON_CONFLICT}"
)

#: Binary parameters (%b): psycopg's text format escapes every quote of every payload, in Python.
_PG_ARRAYS = (
    "%b::integer[], %b::varchar[], %b::varchar[], %b::text[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[], %b::jsonb[]"
)
#: Returns (suppression version or NULL if the lock row is missing, rows inserted).
_PG_LOCK_AND_INSERT = f"""
WITH lock AS (
    UPDATE settings SET value = value WHERE name = '{LOCK_ROW}' RETURNING value
), inserted AS (
    INSERT INTO events ({", ".join(COLUMNS)})
    SELECT * FROM unnest({_PG_ARRAYS})
    WHERE EXISTS (SELECT 1 FROM lock WHERE CAST(lock.value AS BIGINT) IN (0, %s))
    {_ON_CONFLICT}
    RETURNING 1
)
SELECT (SELECT value FROM lock), (SELECT count(*) FROM inserted)
"""


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value


class _SQLiteTime:
    """One column's times as SQLAlchemy stores them on SQLite; a batch shares its received_at, so
    a value that is the previous row's is not formatted again."""

    def __init__(self) -> None:
        self._last: datetime | None = None
        self._text: str | None = None

    def __call__(self, value: datetime | None) -> str | None:
        if value is None or value is self._last:
            return None if value is None else self._text
        if value.tzinfo is UTC:  # isoformat ends in +00:00
            text = value.isoformat(" ", "microseconds")[:-6]
        else:
            utc = _utc(value).astimezone(UTC)  # type: ignore[union-attr]
            text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
        self._last, self._text = value, text
        return text


def insert_sqlite(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert (skipping stored `(source_id, message_id)`); returns the number of rows inserted.
    The caller holds the log lock."""
    return conn.exec_driver_sql(_SQLITE_INSERT, sqlite_values(rows)).rowcount


def insert_sqlite_values(conn: sa.Connection, values: Sequence[tuple[Any, ...]]) -> int:
    """`insert_sqlite` of rows already in stored form (`sqlite_values`, in `COLUMNS` order)."""
    return conn.exec_driver_sql(_SQLITE_INSERT, list(values)).rowcount


def sqlite_values(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as the tuples SQLite stores (`COLUMNS` order): times as text, the payload as JSON."""
    received, sent, original, timestamp = _SQLiteTime(), _SQLiteTime(), _SQLiteTime(), _SQLiteTime()
    return [
        (
            row["source_id"],
            row["message_id"],
            row["type"],
            row.get("event"),
            row.get("user_id"),
            row.get("anonymous_id"),
            received(row["received_at"]),
            sent(row.get("sent_at")),
            original(row.get("original_timestamp")),
            timestamp(row["timestamp"]),
            json_serializer(row["payload"]),
        )
        for row in rows
    ]


def lock_and_insert_postgresql(
    conn: sa.Connection, rows: Sequence[dict[str, Any]], checked_version: int | None
) -> tuple[int | None, int]:
    """Take the log lock and insert, in one statement. The rows go in only if the suppression
    version is 0 (nothing erased) or `checked_version`. Returns (version, rows inserted); a
    version of None means the lock row is missing (nothing was inserted)."""
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    (sources, message_ids, types, events, user_ids, anonymous_ids) = columns[:6]
    (received, sent, original, timestamps, payloads) = columns[6:]
    for row in rows:
        sources.append(row["source_id"])
        message_ids.append(row["message_id"])
        types.append(row["type"])
        events.append(row.get("event"))
        user_ids.append(row.get("user_id"))
        anonymous_ids.append(row.get("anonymous_id"))
        received.append(_utc(row["received_at"]))
        sent.append(_utc(row.get("sent_at")))
        original.append(_utc(row.get("original_timestamp")))
        timestamps.append(_utc(row["timestamp"]))
        payloads.append(json_serializer(row["payload"]))
    allowed = -1 if checked_version is None else checked_version
    version, inserted = conn.exec_driver_sql(_PG_LOCK_AND_INSERT, (*columns, allowed)).one()
    return (None if version is None else int(version)), int(inserted)
