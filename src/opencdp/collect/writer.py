"""One writer thread that commits events in groups.

SQLite allows one writer at a time, and every commit costs an fsync. Requests hand their rows
to this thread; it takes whatever has queued up, writes it in one transaction, commits once and
only then releases the waiting requests. Throughput scales with load (group commit) while no
request is answered before its events are durable. PostgreSQL gains the same way.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.log.append import LogAppender
from opencdp.log.intake import Intake
from opencdp.store.write_turns import WriteTurns

log = logs.get("opencdp.writer")

_STOP = object()


class WriterClosed(RuntimeError):
    """The writer is shutting down and accepts nothing more."""


class LogWriter:
    def __init__(
        self,
        engine: sa.Engine,
        appender: LogAppender,
        max_rows_per_commit: int = 5000,
        on_commit: Callable[[], None] | None = None,
        intake: Intake | None = None,
    ) -> None:
        self._on_commit = on_commit
        #: SQLite under `serve`: commit to the intake (log/intake.py), which the processor moves
        #: into the log, instead of waiting for the main file's write lock
        self._intake = intake
        self._engine = engine
        self._appender = appender
        self._turns = WriteTurns(engine)
        self._max_rows = max_rows_per_commit
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="opencdp-log-writer", daemon=True)
        self._closed = False
        self.commits = 0
        self.rows_written = 0
        self._failure: str | None = None  # why the last write failed, until one succeeds

    def start(self) -> None:
        self._thread.start()

    def submit(self, rows: list[dict[str, Any]], checked_version: int | None = None) -> Future[None]:
        """Queue rows; the future completes once they are committed (or fails, with nothing written).
        `checked_version`: the suppression list version the rows were already filtered against."""
        if self._closed:
            raise WriterClosed("the event log writer is shutting down")
        future: Future[None] = Future()
        self._queue.put((rows, future, checked_version))
        return future

    def queue_depth(self) -> int:
        """Requests waiting for the writer (approximate, for metrics)."""
        return self._queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what was queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            group = [item]
            rows = len(item[0])
            while rows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
                rows += len(item[0])
            self._write_group(group)

    def failure(self) -> str | None:
        """Why the newest write failed, if no write has succeeded since (for health checks)."""
        return self._failure

    def _write_group(self, group: list[tuple[list[dict[str, Any]], Future[None], int | None]]) -> None:
        versions = {version for _, _, version in group}
        try:
            self.write(
                [row for rows, _, _ in group for row in rows], versions.pop() if len(versions) == 1 else None
            )
        except Exception:
            if len(group) == 1:
                log.exception("event write failed")
                group[0][1].set_exception(RuntimeError("the event log could not be written"))
                return
            # One request's rows broke the transaction: retry each alone so the others still land.
            for rows, future, version in group:
                try:
                    self.write(rows, version)
                except Exception as exc:
                    log.exception("event write failed", rows=len(rows))
                    future.set_exception(exc)
                else:
                    future.set_result(None)
            return
        for _, future, _ in group:
            future.set_result(None)
        if self._on_commit is not None:
            self._on_commit()

    def write(self, rows: list[dict[str, Any]], checked_version: int | None = None) -> None:
        """Append rows in one transaction, now, on the calling thread."""
        try:
            if self._intake is not None:
                self._intake.append(rows, checked_version)
            else:
                with self._turns.turn(), self._engine.begin() as conn:
                    self._appender.append(conn, rows, checked_version)
        except sa.exc.OperationalError as exc:  # disk full, database locked, server gone
            self._failure = str(exc.orig or exc).splitlines()[0][:200]
            raise
        except sqlite3.OperationalError as exc:  # the intake: disk full, locked
            self._failure = str(exc).splitlines()[0][:200]
            raise
        self._failure = None
        self.commits += 1
        self.rows_written += len(rows)
