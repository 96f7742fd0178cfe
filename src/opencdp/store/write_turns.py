"""Fair turns at SQLite's one write lock for the busy writers: the log writer, the processor and the
delivery loop (the outbox's claims and outcomes, the journey runner's steps).

SQLite lets one transaction write at a time; a writer that finds the lock taken sleeps in its busy
handler (1, 2, 5, 10 … up to 100 ms between retries) and keeps missing the short gaps between the
other side's transactions, so a processor working through a backlog could starve collection.
The busy writers therefore queue on advisory file locks (`flock`) beside the database first, with a
turnstile: to take the lock one first passes the turnstile (`-turnstile`), then takes the lock
(`-turns`) and only then lets the turnstile go. A writer waiting for the lock holds the turnstile,
so another, coming back for its next transaction, queues behind it instead of taking the lock
again at once: when all are busy they take turns (measured: without a turn of its own the delivery
loop waited a second and more for the lock beside a processor at 200 events/s). Correctness never
depends on this: SQLite's own lock still guards every transaction, and other writers (imports, the
admin API) only use the busy handler. On PostgreSQL (row locks, no database-wide write lock) it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import sqlalchemy as sa

from opencdp.store.dialect import take_write_lock


class WriteTurns:
    """One queue per database file; each user needs its own instance (its own file description)."""

    def __init__(self, engine: sa.Engine | None, path: str | None = None) -> None:
        """Turns at `engine`'s database, or at the SQLite file `path` (the log's intake)."""
        self._fds: tuple[int, int] | None = None
        self._engine = engine
        database = engine.url.database if engine is not None and engine.dialect.name == "sqlite" else path
        usable = database and database != ":memory:" and not database.startswith("file:")
        self._path = database if usable else None

    def _files(self) -> tuple[int, int] | None:
        """Opened at the first turn (and again after `close`): a worker that is closed and used
        again still queues."""
        if self._fds is None and self._path is not None:
            self._fds = (
                os.open(f"{self._path}-turnstile", os.O_RDWR | os.O_CREAT, 0o600),
                os.open(f"{self._path}-turns", os.O_RDWR | os.O_CREAT, 0o600),
            )
        return self._fds

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        fds = self._files()
        if fds is None:
            yield
            return
        turnstile, lock = fds
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction at our turn, holding SQLite's write lock from its first statement.
        Never nest two (in one thread they would wait for each other)."""
        assert self._engine is not None, "a transaction needs the engine's turns"
        with self.turn(), self._engine.begin() as conn:
            take_write_lock(conn)
            yield conn

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def __del__(self) -> None:  # a worker or runner dropped without `close` leaks no descriptors
        self.close()
