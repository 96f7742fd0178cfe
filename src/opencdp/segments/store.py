"""Saved segments: create, read, list, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.segments.compiler import SegmentReferenceError, members_query
from opencdp.segments.language import parse_criteria, to_document
from opencdp.store.schema import segment_memberships, segment_transitions, segments


class SegmentError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    description: str
    criteria: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def lookup_in(conn: sa.Connection) -> Any:
    def lookup(name: str) -> Any | None:
        return conn.execute(sa.select(segments.c.criteria).where(segments.c.name == name)).scalar()

    return lookup


def check(conn: sa.Connection, criteria: Any, name: str | None = None) -> Any:
    """Validate and compile once (catches unknown or circular segment references)."""
    parsed = parse_criteria(criteria)
    lookup = lookup_in(conn)

    def guarded(ref: str) -> Any | None:
        return criteria if ref == name else lookup(ref)

    try:
        members_query(parsed, datetime.now(UTC), guarded)
    except SegmentReferenceError as exc:
        raise SegmentError(str(exc)) from None
    return parsed


def save(
    engine: sa.Engine, name: str, criteria: Any, description: str = "", replace: bool = False
) -> Segment:
    name = name.strip()
    if not name:
        raise SegmentError("a segment needs a name")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        document = to_document(check(conn, criteria, name))
        existing = conn.execute(sa.select(segments.c.id).where(segments.c.name == name)).scalar()
        if existing is not None and not replace:
            raise SegmentError(f"a segment named {name!r} already exists")
        if existing is None:
            conn.execute(
                segments.insert().values(
                    name=name, description=description, criteria=document, created_at=now, updated_at=now
                )
            )
        else:
            conn.execute(
                segments.update()
                .where(segments.c.id == existing)
                .values(description=description, criteria=document, updated_at=now)
            )
        row = conn.execute(sa.select(segments).where(segments.c.name == name)).one()
        from opencdp.segments.memberships import refresh

        refresh(conn, row.id, row.criteria, now)  # members at once, not at the next scheduled refresh
    return Segment(row.id, row.name, row.description, row.criteria, row.created_at, row.updated_at)


def get(engine: sa.Engine, name: str) -> Segment:
    with engine.connect() as conn:
        row = conn.execute(sa.select(segments).where(segments.c.name == name)).first()
    if row is None:
        raise SegmentError(f"no segment named {name!r}")
    return Segment(row.id, row.name, row.description, row.criteria, row.created_at, row.updated_at)


def list_all(engine: sa.Engine) -> list[Segment]:
    with engine.connect() as conn:
        return [
            Segment(r.id, r.name, r.description, r.criteria, r.created_at, r.updated_at)
            for r in conn.execute(sa.select(segments).order_by(segments.c.name))
        ]


def delete(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        segment_id = conn.execute(sa.select(segments.c.id).where(segments.c.name == name)).scalar()
        if segment_id is None:
            raise SegmentError(f"no segment named {name!r}")
        for other in conn.execute(sa.select(segments.c.name, segments.c.criteria)).all():
            if other.name != name and f'"segment": "{name}"' in _compact(other.criteria):
                raise SegmentError(f"segment {other.name!r} refers to {name!r}; change or delete it first")
        conn.execute(segment_memberships.delete().where(segment_memberships.c.segment_id == segment_id))
        conn.execute(segment_transitions.delete().where(segment_transitions.c.segment_id == segment_id))
        conn.execute(segments.delete().where(segments.c.id == segment_id))


def _compact(document: Any) -> str:
    import json

    return json.dumps(document, separators=(", ", ": "))
