"""The suppression list: salted hashes of erased people's identifiers. The collector drops any
new event carrying one of them, so an erased person does not come back through a tracker."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.log.lock import bump_suppression_version, lock_log, suppression_version
from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import settings_store, suppressions

SALT_SETTING = "suppression_salt"


def salt(conn: sa.Connection) -> str:
    """This installation's salt (created on first use): hashes cannot be matched across installations."""
    value = conn.execute(
        sa.select(settings_store.c.value).where(settings_store.c.name == SALT_SETTING)
    ).scalar()
    if value is None:
        conn.execute(
            insert_ignoring_duplicates(conn.dialect.name, settings_store, ["name"]),
            [{"name": SALT_SETTING, "value": secrets.token_hex(32)}],
        )
        value = conn.execute(
            sa.select(settings_store.c.value).where(settings_store.c.name == SALT_SETTING)
        ).scalar_one()
    return str(value)


def identifier_hash(salt_value: str, ident: Identifier) -> str:
    return hashlib.sha256(f"{salt_value}\x1f{ident.type}\x1f{ident.value}".encode()).hexdigest()


def suppress(conn: sa.Connection, identifiers: Iterable[Identifier]) -> int:
    """Add the identifiers to the list, under the log lock (taken here if the caller has not), so
    that every append from now on sees them."""
    lock_log(conn)
    salt_value = salt(conn)
    rows = [
        {"identifier_hash": identifier_hash(salt_value, i), "created_at": datetime.now(UTC)}
        for i in identifiers
    ]
    if rows:
        conn.execute(insert_ignoring_duplicates(conn.dialect.name, suppressions, ["identifier_hash"]), rows)
        bump_suppression_version(conn)
    return len(rows)


@dataclass(frozen=True)
class SuppressionList:
    """One consistent copy of the list: checks and the version they were made against go together."""

    hashes: frozenset[str]
    salt: str
    rules: IdentityRules
    #: bumped by every change of the list (`log.lock`): rows checked against an older copy are
    #: checked again when appended
    version: int = 0

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def is_suppressed(self, message: dict[str, Any]) -> bool:
        if not self.hashes:
            return False
        return any(identifier_hash(self.salt, i) in self.hashes for i in self.rules.extract(message))


class Suppressor:
    """In-memory copy of the suppression list, refreshed every few seconds (and at once after an
    erasure in this process). The collector checks it to answer fast; the log appender checks again
    under the log lock whenever the copy is older than the list, so a stale copy never lets an erased
    person back in. Costs nothing while the list is empty."""

    def __init__(self, engine: sa.Engine, rules: IdentityRules, refresh_seconds: float = 5.0) -> None:
        self._engine = engine
        self._rules = rules
        self._refresh_seconds = refresh_seconds
        self._list = SuppressionList(frozenset(), "", rules, -1)
        self._loaded_at = -1e9

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    def load(self, conn: sa.Connection) -> SuppressionList:
        """The list as `conn`'s transaction sees it (and the cached copy from now on)."""
        # the version first: a change committed between the two reads makes the copy look older
        # than it is (checked again, harmless), never newer
        version = suppression_version(conn)
        hashes = frozenset(r[0] for r in conn.execute(sa.select(suppressions.c.identifier_hash)))
        current = SuppressionList(hashes, salt(conn) if hashes else "", self._rules, version)
        self._list, self._loaded_at = current, time.monotonic()
        return current

    def current(self) -> SuppressionList:
        """The cached copy, at most `refresh_seconds` old."""
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            with self._engine.begin() as conn:
                return self.load(conn)
        return self._list
