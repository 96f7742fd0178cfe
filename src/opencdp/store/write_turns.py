"""Fair turns at SQLite's one write lock for the two busiest writers: the log writer and the processor.

SQLite lets one transaction write at a time; a writer that finds the lock taken sleeps in its busy
handler (1, 2, 5, 10 … up to 100 ms between retries) and may keep missing the short gaps between
the other side's transactions. Both writers therefore queue on an advisory file lock (`flock`)
beside the database first: the kernel wakes a waiter the moment the lock is released, and the
processor steps aside briefly after each chunk (`yield_turn`). Correctness never depends on this:
SQLite's own lock still guards every transaction, and other writers (imports, the admin API) only
use the busy handler. On PostgreSQL (row locks, no database-wide write lock) it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

import sqlalchemy as sa


class WriteTurns:
    """One queue per database file; each user needs its own instance (its own file description)."""

    def __init__(self, engine: sa.Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._fd: int | None = None
        if database and database != ":memory:" and not database.startswith("file:"):
            self._fd = os.open(f"{database}-turns", os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if self._fd is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def yield_turn(self) -> None:
        """Let a writer that queued behind us go first (a woken waiter needs a moment to run)."""
        if self._fd is not None:
            time.sleep(0.002)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
