"""The log lock: held by every append to the event log and by an erasure, until their transaction ends.

It is one row (`settings`, name `log_lock`) that holds the suppression list's version. Taking the
lock is a single `UPDATE … RETURNING` on both engines: PostgreSQL waits for the row lock and then
returns the newest committed value (READ COMMITTED re-reads a row it waited for); SQLite takes its
write lock. So one round trip gives both the lock and the version the suppression check needs —
a second statement would cost a collector's writer thread another wait for the GIL. (On
PostgreSQL the appender sends this same `UPDATE` inside its insert statement: `log/insert.py`.)

Held by appends, it makes ids visible in the order they were handed out: a reader that sees event
N sees every event below N that will ever exist, so `id > checkpoint` never passes over an event
that commits later (PostgreSQL hands out sequence values before commit).
"""

from __future__ import annotations

import sqlalchemy as sa

from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import settings_store

LOCK_ROW = "log_lock"

_TAKE = sa.text("UPDATE settings SET value = value WHERE name = :name RETURNING value").bindparams(
    name=LOCK_ROW
)


def lock_log(conn: sa.Connection) -> int:
    """Take the log lock for the rest of `conn`'s transaction; returns the suppression version."""
    value = conn.execute(_TAKE).scalar()
    if value is None:  # a database from before the row existed, or it was removed by hand
        conn.execute(
            insert_ignoring_duplicates(conn.dialect.name, settings_store, ["name"]),
            [{"name": LOCK_ROW, "value": "0"}],
        )
        value = conn.execute(_TAKE).scalar_one()
    return int(value)


def bump_suppression_version(conn: sa.Connection) -> int:
    """The suppression list changed (caller holds the log lock): appends must check again."""
    version = lock_log(conn) + 1
    conn.execute(settings_store.update().where(settings_store.c.name == LOCK_ROW).values(value=str(version)))
    return version


def suppression_version(conn: sa.Connection) -> int:
    """The version without taking the lock (for a cached copy that will be checked again)."""
    value = conn.execute(sa.select(settings_store.c.value).where(settings_store.c.name == LOCK_ROW)).scalar()
    return int(value) if value is not None else 0
