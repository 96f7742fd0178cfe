"""The few places where SQLite and PostgreSQL differ, kept together so nothing else has to ask.

Everything else in opencdp uses plain SQLAlchemy Core and never checks which engine it runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import Insert

#: An auto-incrementing 64-bit key (on SQLite it must be INTEGER to alias the rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Free-form JSON: JSONB on PostgreSQL (indexable), JSON text on SQLite (JSON1 functions).
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class RawJSON:
    """A value already serialised to JSON text, so a payload is not encoded twice on the hot path."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def json_serializer(value: Any) -> str:
    if isinstance(value, RawJSON):
        return value.text
    return orjson.dumps(value).decode()


def json_deserializer(text: str | bytes) -> Any:
    return orjson.loads(text)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps always stored in UTC and always read back timezone-aware, on both engines.

    SQLite has no time zone type: we store naive UTC text, which sorts correctly as a string.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def insert_ignoring_duplicates(dialect_name: str, table: sa.Table, unique_columns: Sequence[str]) -> Insert:
    """INSERT that silently skips rows whose unique key is already stored (idempotent retries)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(unique_columns))
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(unique_columns))
    raise NotImplementedError(f"unsupported database engine {dialect_name!r}")


def upsert(
    dialect_name: str, table: sa.Table, key_columns: Sequence[str], update_columns: Sequence[str]
) -> Insert:
    """INSERT … ON CONFLICT (key) DO UPDATE SET the given columns from the proposed row."""
    module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect_name)
    if module is None:
        raise NotImplementedError(f"unsupported database engine {dialect_name!r}")
    stmt = module.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns), set_={c: stmt.excluded[c] for c in update_columns}
    )


def lock_for_processing(conn: sa.Connection, name: str, wait: bool = True) -> bool:
    """Serialise processors: a transaction-level advisory lock on PostgreSQL; on SQLite, taking the
    write lock up front (a write as the first statement) so two processors never interleave.
    With `wait=False` (PostgreSQL) returns False at once if another transaction holds it."""
    if conn.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = conn.execute(
            sa.text(f"SELECT {function}(hashtext(:name))"), {"name": "opencdp:" + name}
        ).scalar()
        return got is not False
    conn.execute(
        sa.text("UPDATE processor_state SET last_event_id = last_event_id WHERE name = :name"),
        {"name": name},
    )
    return True


def take_write_lock(conn: sa.Connection) -> None:
    """SQLite: make the transaction a writer now, before its first read. A transaction that reads
    and then writes fails with "database is locked" (no wait helps) when another connection wrote
    in between; one that starts by writing waits its turn instead. PostgreSQL: nothing to do (row
    locks are taken by the statements themselves)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("UPDATE settings SET value = value WHERE 0")


def purge_deleted_content(engine: sa.Engine, seconds: float = 30.0, quiet: bool = False) -> bool:
    """After an erasure: make sure no copy of deleted rows stays in the database files.

    PostgreSQL: nothing to do here (dead tuples are reclaimed by vacuum; the files are the
    server's). SQLite: `secure_delete` zeroes deleted cells, but not the copies a b-tree balance
    left in the unused middle of pages it rebuilt earlier (measured: an erased id still in three
    leaf pages of a table after delete and checkpoint), so the database is rewritten (`VACUUM`:
    fresh pages, no leftovers; processing waits meanwhile, collection goes on into the log's
    intake). Then a TRUNCATE checkpoint copies the new pages into the main file and empties the
    WAL, which held the old versions. It needs a moment when nobody writes and no reader is inside
    the WAL: the log
    writers and processors of every process queue behind this one at the write turns (under load
    SQLite's busy handler alone let them starve the checkpoint for longer than the retries lasted,
    and the WAL kept the erased values), and readers finish their short transactions. Retried for
    `seconds`; returns whether it completed, and says so in the log when it did not."""
    if engine.dialect.name != "sqlite":
        return True
    import contextlib
    import sqlite3
    import time

    from opencdp import logs
    from opencdp.store.write_turns import WriteTurns

    deadline = time.monotonic() + seconds
    turns = WriteTurns(engine)
    try:
        with turns.turn():
            vacuumed = False
            while True:
                # both wait in the busy handler for other connections: never longer than we may
                wait_ms = int(1000 * min(1.0, max(0.0, deadline - time.monotonic())))
                with engine.connect() as conn:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                    raw.execute(f"PRAGMA busy_timeout={wait_ms}")
                    try:
                        if not vacuumed:
                            with contextlib.suppress(sqlite3.OperationalError):  # busy: again
                                raw.execute("VACUUM")
                                vacuumed = True
                        busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] if vacuumed else 1
                    finally:
                        raw.execute("PRAGMA busy_timeout=30000")
                if not busy:
                    if _set_purge_pending(engine, False):
                        continue  # clearing the mark wrote to the WAL: empty it once more
                    return True
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        _set_purge_pending(engine, True)
    finally:
        turns.close()
    if quiet:
        return False
    logs.get("opencdp.privacy").warning(
        "the write-ahead log could not be emptied after an erasure: old copies of the erased rows stay "
        "in it until a complete checkpoint; the processor tries again whenever it has caught up",
        seconds=seconds,
    )
    return False


#: a `settings` row present while an erasure's checkpoint is still owed (`purge_deleted_content`)
PURGE_PENDING = "wal_purge_pending"


def _set_purge_pending(engine: sa.Engine, pending: bool) -> bool:
    """Set or clear the mark; whether a row changed."""
    with engine.begin() as conn:
        if pending:
            sql = "INSERT INTO settings (name, value) VALUES (?, '1') ON CONFLICT (name) DO NOTHING"
        else:
            sql = "DELETE FROM settings WHERE name = ?"
        return bool(conn.exec_driver_sql(sql, (PURGE_PENDING,)).rowcount)


def retry_pending_purge(engine: sa.Engine, seconds: float = 1.0) -> bool | None:
    """SQLite: if an erasure's checkpoint is still owed, try it again (briefly); None when none
    is owed. Called by processors when they have caught up, so the owed purge happens as soon as
    the load lets it."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        owed = conn.exec_driver_sql("SELECT 1 FROM settings WHERE name = ?", (PURGE_PENDING,)).first()
    if owed is None:
        return None
    return purge_deleted_content(engine, seconds, quiet=True)


def engine_options(url: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "json_serializer": json_serializer,
        "json_deserializer": json_deserializer,
        # SQL errors (and so logged tracebacks) show the statement, never the values: personal data.
        "hide_parameters": True,
    }
    if url.startswith("sqlite"):
        # Connections are used by the writer thread and by reader threads.
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        options["pool_pre_ping"] = True
        options["pool_size"] = 10
    return options


def on_connect(dbapi_connection: Any, synchronous: str) -> None:
    """Per-connection setup for SQLite: WAL for concurrent readers, durable commits, foreign keys."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")  # validated in config: FULL/NORMAL/EXTRA
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free space
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# --- Typed access to one top-level key of a JSON column -----------------------------------------
# Strictly typed on purpose: "42" (a string) is not the number 42, on both engines, so a segment
# over dirty data neither crashes (PostgreSQL casts) nor matches differently per engine.


class _JsonKey(sa.sql.functions.FunctionElement[Any]):
    inherit_cache = True
    kind = "text"

    def __init__(self, column: sa.ColumnElement[Any], key: str) -> None:
        super().__init__(column, sa.bindparam(None, key, type_=sa.String()))


class json_text(_JsonKey):
    type = sa.String()
    kind = "text"
    inherit_cache = True


class json_number(_JsonKey):
    type = sa.Float()
    kind = "number"
    inherit_cache = True


class json_bool(_JsonKey):
    type = sa.Boolean()
    kind = "bool"
    inherit_cache = True


class json_present(_JsonKey):
    """True when the key exists with a non-null value."""

    type = sa.Boolean()
    kind = "present"
    inherit_cache = True


_SQLITE_TYPES = {"text": "('text')", "number": "('integer', 'real')", "bool": "('true', 'false')"}
_PG_TYPES = {"text": "'string'", "number": "'number'", "bool": "'boolean'"}
_PG_CASTS = {"text": "{v}", "number": "CAST({v} AS DOUBLE PRECISION)", "bool": "CAST({v} AS BOOLEAN)"}


@compiles(_JsonKey, "sqlite")
def _json_key_sqlite(element: _JsonKey, compiler: Any, **kw: Any) -> str:
    column, key = (compiler.process(arg, **kw) for arg in element.clauses)
    path = f"('$.\"' || {key} || '\"')"
    kind_of = f"json_type({column}, {path})"
    if element.kind == "present":
        return f"(coalesce({kind_of}, 'null') != 'null')"
    value = f"({kind_of} = 'true')" if element.kind == "bool" else f"json_extract({column}, {path})"
    return f"(CASE WHEN {kind_of} IN {_SQLITE_TYPES[element.kind]} THEN {value} END)"


@compiles(_JsonKey, "postgresql")
def _json_key_postgresql(element: _JsonKey, compiler: Any, **kw: Any) -> str:
    column, key = (compiler.process(arg, **kw) for arg in element.clauses)
    kind_of = f"jsonb_typeof({column} -> CAST({key} AS TEXT))"
    if element.kind == "present":
        return f"(coalesce({kind_of}, 'null') != 'null')"
    value = _PG_CASTS[element.kind].format(v=f"({column} ->> CAST({key} AS TEXT))")
    return f"(CASE WHEN {kind_of} = {_PG_TYPES[element.kind]} THEN {value} END)"


class text_contains(sa.sql.functions.FunctionElement[Any]):
    """Case-sensitive substring test with the same answer on both engines (LIKE is not: SQLite's
    LIKE ignores ASCII case, PostgreSQL's does not)."""

    type = sa.Boolean()
    inherit_cache = True


@compiles(text_contains, "sqlite")
def _contains_sqlite(element: text_contains, compiler: Any, **kw: Any) -> str:
    haystack, needle = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(instr({haystack}, {needle}) > 0)"


@compiles(text_contains, "postgresql")
def _contains_postgresql(element: text_contains, compiler: Any, **kw: Any) -> str:
    haystack, needle = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(strpos({haystack}, {needle}) > 0)"


class _TextShape(sa.sql.functions.FunctionElement[Any]):
    """Whether text has the shape of a date (`calendar.DATE_TEXT`) or of a UTC time
    (`calendar.UTC_TEXT`): GLOB on SQLite, a regular expression on PostgreSQL, the same strings."""

    type = sa.Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True
    glob = ""
    regex = ""


_D2, _D4 = "[0-9][0-9]", "[0-9][0-9][0-9][0-9]"


class text_is_date(_TextShape):
    inherit_cache = True
    glob = f"{_D4}-{_D2}-{_D2}"
    regex = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class text_is_utc_time(_TextShape):
    inherit_cache = True
    glob = f"{_D4}-{_D2}-{_D2}T{_D2}:{_D2}:{_D2}*Z"
    regex = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}.*Z$"


@compiles(_TextShape, "sqlite")
def _text_shape_sqlite(element: _TextShape, compiler: Any, **kw: Any) -> str:
    (text,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({text} GLOB '{element.glob}')"


@compiles(_TextShape, "postgresql")
def _text_shape_postgresql(element: _TextShape, compiler: Any, **kw: Any) -> str:
    (text,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({text} ~ '{element.regex}')"


class epoch_seconds(sa.sql.functions.FunctionElement[Any]):
    """Seconds since 1970 of a UTC timestamp column, for gaps between events on both engines."""

    type = sa.Float()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: Any, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


class json_path_text(sa.sql.functions.FunctionElement[Any]):
    """The text at a nested path of a JSON column (None when absent or not a string), both engines.
    The path travels as bound values (SQLite's JSON path, and each key for PostgreSQL's `->`), so
    statements stay cacheable and keys from options never become SQL."""

    type = sa.String()
    inherit_cache = True

    def __init__(self, column: sa.ColumnElement[Any], path: list[str]) -> None:
        sqlite_path = "$" + "".join('."' + key.replace('"', '""') + '"' for key in path)
        super().__init__(
            column,
            sa.bindparam(None, sqlite_path, type_=sa.String()),
            *[sa.bindparam(None, key, type_=sa.String()) for key in path],
        )


@compiles(json_path_text, "sqlite")
def _path_sqlite(element: json_path_text, compiler: Any, **kw: Any) -> str:
    column, path = (compiler.process(arg, **kw) for arg in list(element.clauses)[:2])
    return f"(CASE WHEN json_type({column}, {path}) = 'text' THEN json_extract({column}, {path}) END)"


@compiles(json_path_text, "postgresql")
def _path_postgresql(element: json_path_text, compiler: Any, **kw: Any) -> str:
    column, _, *keys = list(element.clauses)
    value = compiler.process(column, **kw)
    for key in keys:
        value = f"({value} -> CAST({compiler.process(key, **kw)} AS TEXT))"
    return f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN {value} #>> '{{}}' END)"


class days_before(sa.sql.functions.FunctionElement[Any]):
    """(at - ts) in fractional days, on both engines (NULL when ts is NULL)."""

    type = sa.Float()
    inherit_cache = True


@compiles(days_before, "sqlite")
def _days_before_sqlite(element: days_before, compiler: Any, **kw: Any) -> str:
    at, ts = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(julianday({at}) - julianday({ts}))"


@compiles(days_before, "postgresql")
def _days_before_postgresql(element: days_before, compiler: Any, **kw: Any) -> str:
    at, ts = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST(EXTRACT(EPOCH FROM (CAST({at} AS TIMESTAMPTZ) - {ts})) AS DOUBLE PRECISION) / 86400.0)"


#: The unit of `quarter_hour_number`: time zones differ from UTC by whole quarter hours.
QUARTER_HOUR_SECONDS = 900


class utc_day_number(sa.sql.functions.FunctionElement[int]):
    """Days since 1970-01-01 of a UTC timestamp."""

    type = sa.BigInteger()
    inherit_cache = True


class quarter_hour_number(sa.sql.functions.FunctionElement[int]):
    """Quarter hours since 1970-01-01T00:00Z (floor), to be mapped to a local day."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(utc_day_number, "sqlite")
def _utc_day_number_sqlite(element: utc_day_number, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(julianday(date({ts})) - 2440587.5 AS INTEGER)"


@compiles(utc_day_number, "postgresql")
def _utc_day_number_postgresql(element: utc_day_number, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST(({ts} AT TIME ZONE 'UTC') AS DATE) - DATE '1970-01-01')"


@compiles(quarter_hour_number, "sqlite")
def _quarter_hour_number_sqlite(element: quarter_hour_number, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    seconds = f"CAST(strftime('%s', {ts}) AS INTEGER)"
    q = QUARTER_HOUR_SECONDS
    return f"(({seconds} - ((({seconds} % {q}) + {q}) % {q})) / {q})"


@compiles(quarter_hour_number, "postgresql")
def _quarter_hour_number_postgresql(element: quarter_hour_number, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(floor(extract(epoch FROM {ts}) / {QUARTER_HOUR_SECONDS}) AS BIGINT)"
