"""The suppression list: salted hashes of erased people's identifiers. The collector drops any
new event carrying one of them, so an erased person does not come back through a tracker."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.identity.identifiers import Identifier, IdentityRules
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
    salt_value = salt(conn)
    rows = [
        {"identifier_hash": identifier_hash(salt_value, i), "created_at": datetime.now(UTC)}
        for i in identifiers
    ]
    if rows:
        conn.execute(insert_ignoring_duplicates(conn.dialect.name, suppressions, ["identifier_hash"]), rows)
    return len(rows)


class Suppressor:
    """In-memory copy of the suppression list for the collector's hot path, refreshed every few
    seconds (and at once after an erasure in this process). Costs nothing while the list is empty."""

    def __init__(self, engine: sa.Engine, rules: IdentityRules, refresh_seconds: float = 5.0) -> None:
        self._engine = engine
        self._rules = rules
        self._refresh_seconds = refresh_seconds
        self._hashes: frozenset[str] = frozenset()
        self._salt = ""
        self._loaded_at = -1e9
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    def _current(self) -> tuple[frozenset[str], str]:
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            with self._lock, self._engine.begin() as conn:
                hashes = frozenset(r[0] for r in conn.execute(sa.select(suppressions.c.identifier_hash)))
                self._salt = salt(conn) if hashes else ""
                self._hashes = hashes
                self._loaded_at = time.monotonic()
        return self._hashes, self._salt

    def active(self) -> bool:
        return bool(self._current()[0])

    def is_suppressed(self, message: dict[str, Any]) -> bool:
        hashes, salt_value = self._current()
        if not hashes:
            return False
        return any(identifier_hash(salt_value, i) in hashes for i in self._rules.extract(message))
