"""Fair turns at SQLite's one write lock for the two busiest writers: the log writer and the processor.

SQLite lets one transaction write at a time; a writer that finds the lock taken sleeps in its busy
handler (1, 2, 5, 10 … up to 100 ms between retries) and keeps missing the short gaps between the
other side's transactions, so a processor working through a backlog could starve collection.
Both writers therefore queue on advisory file locks (`flock`) beside the database first, with a
turnstile: to take the lock one first passes the turnstile (`-turnstile`), then takes the lock
(`-turns`) and only then lets the turnstile go. A writer waiting for the lock holds the turnstile,
so the other side, coming back for its next transaction, queues behind it instead of taking the
lock again at once: when both are busy they alternate. Correctness never depends on this: SQLite's
own lock still guards every transaction, and other writers (imports, the admin API) only use the
busy handler. On PostgreSQL (row locks, no database-wide write lock) it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import sqlalchemy as sa


class WriteTurns:
    """One queue per database file; each user needs its own instance (its own file description)."""

    def __init__(self, engine: sa.Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._fds: tuple[int, int] | None = None
        if database and database != ":memory:" and not database.startswith("file:"):
            self._fds = (
                os.open(f"{database}-turnstile", os.O_RDWR | os.O_CREAT, 0o600),
                os.open(f"{database}-turns", os.O_RDWR | os.O_CREAT, 0o600),
            )

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if self._fds is None:
            yield
            return
        turnstile, lock = self._fds
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
