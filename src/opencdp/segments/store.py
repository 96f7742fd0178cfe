"""Saved segments: create, read, list, delete; each with its evaluation status (ok or failed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.segments.compiler import SegmentReferenceError, members_query
from opencdp.segments.language import parse_criteria, to_document
from opencdp.store import failures
from opencdp.store.schema import definition_failures, segment_memberships, segment_transitions, segments


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
    #: "failed": the last evaluation raised `error` at `failed_at` (see store/failures.py).
    status: str = "ok"
    error: str | None = None
    failed_at: datetime | None = None


def _select() -> sa.Select[Any]:
    return sa.select(segments, definition_failures.c.error, definition_failures.c.failed_at).outerjoin(
        definition_failures,
        sa.and_(definition_failures.c.kind == "segment", definition_failures.c.name == segments.c.name),
    )


def _segment(row: sa.Row[Any]) -> Segment:
    return Segment(
        row.id,
        row.name,
        row.description,
        row.criteria,
        row.created_at,
        row.updated_at,
        "ok" if row.failed_at is None else "failed",
        row.error,
        row.failed_at,
    )


def lookup_in(conn: sa.Connection) -> Any:
    def lookup(name: str) -> Any | None:
        return conn.execute(sa.select(segments.c.criteria).where(segments.c.name == name)).scalar()

    return lookup


def check(conn: sa.Connection, criteria: Any, name: str | None = None) -> Any:
    """Validate and compile once (catches unknown or circular segment references and criteria over
    the limits once referenced segments are expanded)."""
    return checked_query(conn, criteria, name)[0]


def checked_query(
    conn: sa.Connection, criteria: Any, name: str | None = None, now: datetime | None = None
) -> tuple[Any, sa.Select[Any]]:
    """The parsed criteria and their members query (raises CriteriaError or SegmentError)."""
    parsed = parse_criteria(criteria)
    lookup = lookup_in(conn)

    def guarded(ref: str) -> Any | None:
        return criteria if ref == name else lookup(ref)

    try:
        return parsed, members_query(parsed, now or datetime.now(UTC), guarded)
    except SegmentReferenceError as exc:
        raise SegmentError(str(exc)) from None


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
        failures.clear(conn, "segment", name)  # redefined: evaluated afresh
        row = conn.execute(sa.select(segments).where(segments.c.name == name)).one()
        from opencdp.segments.memberships import refresh

        refresh(conn, row.id, row.criteria, now)  # members at once, not at the next scheduled refresh
    return Segment(row.id, row.name, row.description, row.criteria, row.created_at, row.updated_at)


def get(engine: sa.Engine, name: str) -> Segment:
    with engine.connect() as conn:
        row = conn.execute(_select().where(segments.c.name == name)).first()
    if row is None:
        raise SegmentError(f"no segment named {name!r}")
    return _segment(row)


def list_all(engine: sa.Engine) -> list[Segment]:
    with engine.connect() as conn:
        return [_segment(r) for r in conn.execute(_select().order_by(segments.c.name))]


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
        from opencdp.activation.audiences import forget_segment

        forget_segment(conn, segment_id)
        failures.clear(conn, "segment", name)


def _compact(document: Any) -> str:
    import json

    return json.dumps(document, separators=(", ", ": "))
