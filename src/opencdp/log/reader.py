"""Reading the event log in its global order (by `id`), with filters, for the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from opencdp.store.schema import events, sources


@dataclass(frozen=True)
class EventQuery:
    source: str | None = None
    type: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    after_id: int = 0
    limit: int = 100


def read_events(engine: sa.Engine, query: EventQuery) -> list[dict[str, Any]]:
    stmt = (
        sa.select(events, sources.c.name.label("source"))
        .join(sources, sources.c.id == events.c.source_id)
        .where(*_filters(query))
        .order_by(events.c.id)
        .limit(query.limit)
    )
    with engine.connect() as conn:
        result = conn.execute(stmt)
        names = [str(name) for name in result.keys()]  # noqa: SIM118  # plain str: SQLAlchemy's names subclass it
        return [dict(zip(names, row, strict=True)) for row in result]


def _filters(query: EventQuery) -> list[sa.ColumnElement[bool]]:
    """The WHERE of `query` (without its limit): one place, so a count and a listing agree."""
    where = [events.c.id > query.after_id]
    for column, value in (
        (sources.c.name, query.source),
        (events.c.type, query.type),
        (events.c.user_id, query.user_id),
        (events.c.anonymous_id, query.anonymous_id),
        (events.c.message_id, query.message_id),
    ):
        if value is not None:
            where.append(column == value)
    return where


def count_events(engine: sa.Engine, source: str | None = None, query: EventQuery | None = None) -> int:
    """How many events the log holds: all, one source's, or those `query` selects (its limit
    aside); `source` is shorthand for `EventQuery(source=...)`."""
    if query is None:
        query = EventQuery(source=source)
    elif source is not None:
        raise TypeError("give either `source` or a `query`, not both")
    stmt = sa.select(sa.func.count()).select_from(events)
    if query.source is not None:
        stmt = stmt.join(sources, sources.c.id == events.c.source_id)
    stmt = stmt.where(*_filters(query))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
