"""Appending to the event log: the one way events get in, for the collector, imports and the admin API.

Two guarantees hold for every writer, in every process, because they are enforced here, inside the
appending transaction, rather than by each caller:

- **Commit order is id order.** Appends are serialised (`log.lock`), so a processor that
  reads `id > checkpoint` never passes over an event that commits later with a smaller id.
- **Suppression is authoritative.** A caller may check the suppression list earlier from a cache (the
  collector does, to answer fast); here the list is read under the same lock an erasure takes, and
  rows checked against an older list are checked again. An event of an erased person therefore
  never enters the log once the erasure has committed, whichever process receives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from opencdp import logs
from opencdp.identity.identifiers import IdentityRules
from opencdp.log.insert import insert_sqlite, lock_and_insert_postgresql
from opencdp.log.lock import lock_log
from opencdp.privacy.suppression import Suppressor
from opencdp.store.dialect import RawJSON

log = logs.get("opencdp.log")


@dataclass
class Appended:
    #: rows stored now (None unless asked for)
    written: int | None
    #: rows dropped because they carry an erased person's identifier
    suppressed: int


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    payload = row["payload"]
    if isinstance(payload, RawJSON):
        loaded: dict[str, Any] = orjson.loads(payload.text)
        return loaded
    return dict(payload)


class LogAppender:
    def __init__(self, dialect_name: str, suppressor: Suppressor) -> None:
        if dialect_name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"unsupported database engine {dialect_name!r}")
        self.suppressor = suppressor
        self._postgresql = dialect_name == "postgresql"

    @classmethod
    def for_engine(cls, engine: sa.Engine, rules: IdentityRules | None = None) -> LogAppender:
        """An appender with its own suppression cache (for tools outside the server: imports, tests)."""
        return cls(engine.dialect.name, Suppressor(engine, rules or IdentityRules.from_env()))

    def append_committed(
        self, engine: sa.Engine, rows: Sequence[dict[str, Any]], count: bool = False
    ) -> Appended:
        """Append rows in a transaction of their own."""
        with engine.begin() as conn:
            return self.append(conn, rows, count=count)

    def append(
        self,
        conn: sa.Connection,
        rows: Sequence[dict[str, Any]],
        checked_version: int | None = None,
        count: bool = False,
    ) -> Appended:
        """Insert rows (duplicates of stored `(source_id, message_id)` are skipped) in `conn`'s
        transaction. `checked_version`: the suppression list version the caller already filtered
        the rows against (`SuppressionList.version`); None means not checked."""
        if not rows:
            lock_log(conn)
            return Appended(0 if count else None, 0)
        if self._postgresql:  # lock and insert in one statement, if the check still holds
            current, written = lock_and_insert_postgresql(conn, rows, checked_version)
            if current is not None and current in (0, checked_version):
                return Appended(written if count else None, 0)
        current = lock_log(conn)
        kept = list(rows)
        if current and current != checked_version:
            authoritative = self.suppressor.load(conn)
            kept = [row for row in rows if not authoritative.is_suppressed(_payload(row))]
            if len(kept) < len(rows):
                log.info("dropped events of erased people", events=len(rows) - len(kept))
        if not kept:
            return Appended(0 if count else None, len(rows))
        if self._postgresql:
            _, written = lock_and_insert_postgresql(conn, kept, current)
        else:
            written = insert_sqlite(conn, kept)
        return Appended(written if count else None, len(rows) - len(kept))
