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
        .where(events.c.id > query.after_id)
        .order_by(events.c.id)
        .limit(query.limit)
    )
    for column, value in (
        (sources.c.name, query.source),
        (events.c.type, query.type),
        (events.c.user_id, query.user_id),
        (events.c.anonymous_id, query.anonymous_id),
        (events.c.message_id, query.message_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    with engine.connect() as conn:
        result = conn.execute(stmt)
        names = [str(name) for name in result.keys()]  # noqa: SIM118  # plain str: SQLAlchemy's names subclass it
        return [dict(zip(names, row, strict=True)) for row in result]


def count_events(engine: sa.Engine, source: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(events)
    if source is not None:
        stmt = stmt.join(sources, sources.c.id == events.c.source_id).where(sources.c.name == source)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
