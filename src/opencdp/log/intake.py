"""The log's intake (SQLite): where `opencdp serve`'s collector commits, so that acknowledging an
event never waits for processing.

SQLite has one write lock per database file. Collection and the processor used to share the main
file's: a processor chunk held it for up to 0.3 s, and a collector's request waited behind it
(p99 0.1 to 1.3 s at 1,000 events/s, BENCHMARKS.md). With the intake, the collector's log writer
commits (fsync: durable, then acknowledged) into a small database of its own beside the main one,
`<database>-intake`, whose lock it shares only with the deletes of rows already moved. The
processor moves what arrived into the event log at the start of each step, under the log lock and
with the suppression check (`log/append.py`'s guarantees hold for moved rows as for appended
ones): one `INSERT … SELECT`, no Python per row.

Exactly once: the move and the mark of how far it got (`settings.intake_moved`: the intake file's
instance and the last id moved) commit in one transaction of the main database; the moved rows
are deleted from the intake afterwards. A crash in between leaves rows the next move skips (the
log's unique `(source, messageId)` would ignore them too). The instance, a random id the intake
file is created with, makes a new intake file count from the start.

Only `opencdp serve` with its processor child writes here (the child moves); every processor of
the database moves what it finds, erasure moves before it sweeps, and `serve` moves the rest when
it stops: after a clean stop the intake is empty.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from opencdp.log.insert import COLUMNS, insert_sqlite_values, sqlite_values
from opencdp.log.lock import lock_log
from opencdp.privacy.suppression import Suppressor
from opencdp.store.dialect import on_connect
from opencdp.store.write_turns import WriteTurns

#: the `settings` row that says how far moves got: "<instance>:<last id moved>"
MARK = "intake_moved"
#: rows one move takes (one transaction of the main database; more wait for the next step)
MOVE_LIMIT = 5000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS intake (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        checked_version INTEGER,
        source_id INTEGER NOT NULL, message_id TEXT NOT NULL, type TEXT NOT NULL, event TEXT,
        user_id TEXT, anonymous_id TEXT, received_at TEXT NOT NULL, sent_at TEXT,
        original_timestamp TEXT, timestamp TEXT NOT NULL, payload TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS intake_instance "
    "(id INTEGER PRIMARY KEY CHECK (id = 1), instance TEXT NOT NULL)",
)
_COLUMNS = ", ".join(COLUMNS)
_PLACES = ", ".join("?" for _ in range(len(COLUMNS) + 1))
_APPEND = f"INSERT INTO intake (checked_version, {_COLUMNS}) VALUES ({_PLACES})"
_RANGE = (
    "SELECT max(id), count(*), sum(checked_version IS NOT ?) FROM "
    "(SELECT id, checked_version FROM intake.intake WHERE id > ? ORDER BY id LIMIT ?)"
)
_MOVE = (
    f"INSERT INTO main.events ({_COLUMNS}) SELECT {_COLUMNS} FROM intake.intake "
    "WHERE id > ? AND id <= ? ORDER BY id ON CONFLICT (source_id, message_id) DO NOTHING"
)
_ROWS = f"SELECT checked_version, {_COLUMNS} FROM intake.intake WHERE id > ? AND id <= ? ORDER BY id"
_PAYLOAD = COLUMNS.index("payload")


def intake_path(engine: sa.Engine) -> str | None:
    """Where the intake of `engine`'s database lives (None: not a SQLite file)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-intake"


class Intake:
    """One process's handle on the intake file: appends (the log writer) and moves (processors).
    Thread-safe; opened at first use (a move never creates the file)."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self.turns = WriteTurns(None, path)
        self._conn: sqlite3.Connection | None = None
        self._instance = ""
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            on_connect(conn, self.synchronous)  # WAL, fsync per commit, secure_delete, busy timeout
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO intake_instance VALUES (1, ?)", (uuid.uuid4().hex,))
            self._instance = conn.execute("SELECT instance FROM intake_instance").fetchone()[0]
            self._conn = conn
        return self._conn

    def append(self, rows: Sequence[dict[str, Any]], checked_version: int | None) -> None:
        """Commit rows (durably) for the next move. `checked_version`: the suppression list
        version the caller filtered them against (None: not checked)."""
        values = [(checked_version, *row) for row in sqlite_values(rows)]
        with self._lock, self.turns.turn():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_APPEND, values)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def pending(self) -> int:
        """Rows not yet moved (and moved rows not yet deleted: a moment after each move)."""
        if not os.path.exists(self.path):
            return 0
        with self._lock:
            return int(self._connection().execute("SELECT count(*) FROM intake").fetchone()[0])

    def move(
        self, engine: sa.Engine, turns: WriteTurns, suppressor: Suppressor, limit: int = MOVE_LIMIT
    ) -> int:
        """Move up to `limit` rows into `engine`'s event log (at `turns`, the main file's);
        returns how many rows left the intake (suppressed and duplicate ones included)."""
        if not os.path.exists(self.path):
            return 0
        with self._lock:
            self._connection()
            instance = self._instance
        with turns.turn(), engine.connect() as conn, _attached(conn, self.path), conn.begin():
            current = lock_log(conn)  # the main file's write lock, and the suppression version
            last = _moved(conn, instance)
            upto, count, unchecked = conn.exec_driver_sql(_RANGE, (current, last, limit)).one()
            if count:
                if current == 0 or not unchecked:
                    conn.exec_driver_sql(_MOVE, (last, upto))
                else:  # an erasure since some rows were checked: check them against the list
                    _move_checked(conn, suppressor, current, last, upto)
                _mark(conn, instance, upto)
        self._delete_through(upto if count else last)
        return int(count)

    def _delete_through(self, upto: int) -> None:
        """Delete moved rows (after the move committed); nothing to do costs one read."""
        with self._lock:
            conn = self._connection()
            if conn.execute("SELECT 1 FROM intake WHERE id <= ? LIMIT 1", (upto,)).fetchone() is None:
                return
            with self.turns.turn():
                conn.execute("DELETE FROM intake WHERE id <= ?", (upto,))

    def purge(self) -> None:
        """After an erasure: rewrite the intake (no copy a page rebuild left behind stays, see
        `store.dialect.purge_deleted_content`) and empty its write-ahead log."""
        if os.path.exists(self.path):
            with self._lock, self.turns.turn():
                conn = self._connection()
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self.turns.close()


def backlog(engine: sa.Engine) -> tuple[int, datetime | None]:
    """Rows waiting in `engine`'s intake and when the oldest was received (health, status)."""
    path = intake_path(engine)
    if path is None or not os.path.exists(path):
        return 0, None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        count, oldest = conn.execute("SELECT count(*), min(received_at) FROM intake").fetchone()
    except sqlite3.OperationalError:  # created a moment ago: no table yet
        return 0, None
    finally:
        conn.close()
    return int(count), (datetime.fromisoformat(oldest).replace(tzinfo=UTC) if oldest else None)


@contextlib.contextmanager
def _attached(conn: sa.Connection, path: str) -> Iterator[None]:
    """The intake as schema `intake` of this connection for one move (outside any transaction);
    detached afterwards, so a pooled connection never holds on to a file that was replaced."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("ATTACH DATABASE ? AS intake", (path,))
    try:
        yield
    finally:
        raw.execute("DETACH DATABASE intake")


def moved_through(mark: str | None, instance: str) -> int:
    """The last intake id the mark says is in the log (0: none, or the mark of another file)."""
    moved_instance, _, last = (mark or "").partition(":")
    return int(last) if moved_instance == instance and last.isdigit() else 0


def _moved(conn: sa.Connection, instance: str) -> int:
    return moved_through(
        conn.exec_driver_sql("SELECT value FROM settings WHERE name = ?", (MARK,)).scalar(), instance
    )


def stored_time(text: str) -> datetime:
    """A time as the log stores it on SQLite (naive UTC text), as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class IntakeReader:
    """A read-only view of the intake for readers that must see the newest events before they
    are moved (the decide API's live session). Reopens when the file is replaced."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None
        self.instance = ""

    def _connection(self) -> sqlite3.Connection | None:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self.close()
            return None
        if self._conn is None or inode != self._inode:
            self.close()
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
            try:
                row = conn.execute("SELECT instance FROM intake_instance").fetchone()
            except sqlite3.OperationalError:  # created a moment ago: no tables yet
                conn.close()
                return None
            self._conn, self._inode, self.instance = conn, inode, row[0] if row else ""
        return self._conn

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        """The rows of a query on the intake; None when there is no intake."""
        conn = self._connection()
        return None if conn is None else conn.execute(sql, params).fetchall()

    def moved_through(self, mark: str | None) -> int:
        return moved_through(mark, self.instance)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _mark(conn: sa.Connection, instance: str, upto: int) -> None:
    conn.exec_driver_sql(
        "INSERT INTO settings (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (MARK, f"{instance}:{upto}"),
    )


def _move_checked(conn: sa.Connection, suppressor: Suppressor, current: int, last: int, upto: int) -> None:
    """The move, row by row against the suppression list, for rows checked against an older one."""
    authoritative = suppressor.load(conn)
    kept = []
    for checked, *values in conn.exec_driver_sql(_ROWS, (last, upto)):
        if checked == current or not authoritative.is_suppressed(orjson.loads(values[_PAYLOAD])):
            kept.append(tuple(values))
    if kept:
        insert_sqlite_values(conn, kept)
