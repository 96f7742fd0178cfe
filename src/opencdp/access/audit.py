"""The audit log: who read, exported or changed what, and when. It names keys, users, profile
and segment ids — never identifiers or trait values, so it survives an erasure untouched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.csvsafe import line
from opencdp.store.schema import audit_log


def record(
    target: sa.Engine | sa.Connection,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry. `actor` is e.g. "key:3", "user:7" or "cli"."""
    row = {
        "at": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "detail": detail or {},
    }
    if isinstance(target, sa.Connection):
        target.execute(audit_log.insert(), [row])
    else:
        with target.begin() as conn:
            conn.execute(audit_log.insert(), [row])


#: Columns of every audit listing and CSV export, in order.
COLUMNS = ("id", "at", "actor", "action", "target_type", "target_id", "detail")


def _filtered(stmt: sa.Select[Any], action: str | None, actor: str | None) -> sa.Select[Any]:
    """`action` is exact, or a prefix when it ends in `*` ("segment.*"); `actor` is exact."""
    if action:
        if action.endswith("*"):
            stmt = stmt.where(audit_log.c.action.startswith(action[:-1], autoescape=True))
        else:
            stmt = stmt.where(audit_log.c.action == action)
    if actor:
        stmt = stmt.where(audit_log.c.actor == actor)
    return stmt


def entries(
    engine: sa.Engine,
    after_id: int = 0,
    limit: int = 100,
    action: str | None = None,
    actor: str | None = None,
) -> list[dict[str, Any]]:
    """Entries with an id above `after_id`, oldest first: the id is the pagination cursor."""
    stmt = sa.select(*(audit_log.c[name] for name in COLUMNS)).where(audit_log.c.id > after_id)
    stmt = _filtered(stmt, action, actor).order_by(audit_log.c.id).limit(limit)
    with engine.connect() as conn:
        return [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(stmt)]


def latest(
    engine: sa.Engine, limit: int, action: str | None = None, actor: str | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` entries, oldest first (what a person at a terminal wants to see)."""
    stmt = sa.select(*(audit_log.c[name] for name in COLUMNS))
    stmt = _filtered(stmt, action, actor).order_by(audit_log.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(stmt)]
    return rows[::-1]


def csv_rows(rows: list[dict[str, Any]]) -> Iterator[str]:
    yield line(COLUMNS)
    for row in rows:
        yield line(row[name] for name in COLUMNS)


def export_csv(
    engine: sa.Engine,
    action: str | None = None,
    actor: str | None = None,
    page_size: int = 1000,
) -> Iterator[str]:
    """Every matching entry as CSV lines, read page by page so a long log never sits in memory."""
    yield line(COLUMNS)
    after = 0
    while page := entries(engine, after, page_size, action, actor):
        for row in page:
            yield line(row[name] for name in COLUMNS)
        after = page[-1]["id"]
