"""Stored memberships with entered/exited times, and the transitions that triggers consume.

Updated in real time for the profiles a processed chunk touched, and on a schedule for all
profiles (time windows expire: "no order in 90 days" becomes true without any new event).
Each segment is refreshed in isolation (`store.failures`): one that fails is marked failed and
skipped, the others and the rest of the chunk go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa

from opencdp.segments.compiler import members_query
from opencdp.segments.language import parse_criteria
from opencdp.segments.store import lookup_in
from opencdp.store import failures
from opencdp.store.schema import segment_memberships, segment_transitions, segments

T = TypeVar("T")


def refresh(
    conn: sa.Connection,
    segment_id: int,
    criteria: Any,
    now: datetime,
    profile_ids: Iterable[str] | None = None,
) -> tuple[int, int]:
    """Bring one segment's memberships up to date (for these profiles, or all); returns (entered, exited)."""
    parsed, lookup = parse_criteria(criteria), lookup_in(conn)
    current_q = sa.select(segment_memberships.c.profile_id).where(
        segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None)
    )
    if profile_ids is None:
        members = {r[0] for r in conn.execute(members_query(parsed, now, lookup))}
        current = {r[0] for r in conn.execute(current_q)}
    else:
        ids = sorted(set(profile_ids))
        members, current = set(), set()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            members |= {r[0] for r in conn.execute(members_query(parsed, now, lookup, part))}
            current |= {
                r[0] for r in conn.execute(current_q.where(segment_memberships.c.profile_id.in_(part)))
            }
    entered, exited = sorted(members - current), sorted(current - members)
    for part in _parts(entered):  # in parts: PostgreSQL takes at most 65,535 parameters a statement
        conn.execute(
            segment_memberships.delete().where(
                segment_memberships.c.segment_id == segment_id, segment_memberships.c.profile_id.in_(part)
            )
        )
        conn.execute(
            segment_memberships.insert(),
            [{"segment_id": segment_id, "profile_id": p, "entered_at": now, "exited_at": None} for p in part],
        )
    for part in _parts(exited):
        conn.execute(
            segment_memberships.update()
            .where(segment_memberships.c.segment_id == segment_id, segment_memberships.c.profile_id.in_(part))
            .values(exited_at=now)
        )
    changes: list[dict[str, Any]] = [
        {"segment_id": segment_id, "profile_id": p, "change": "entered", "at": now} for p in entered
    ]
    changes += [{"segment_id": segment_id, "profile_id": p, "change": "exited", "at": now} for p in exited]
    for batch in _parts(changes):
        conn.execute(segment_transitions.insert(), batch)
    # what acts on the change, in its transaction: audience syncs, journeys
    from opencdp.activation.audiences import emit_changes
    from opencdp.journeys.triggers import on_segment_change

    emit_changes(conn, segment_id, entered, exited, now)
    on_segment_change(conn, segment_id, entered, exited, now)
    return len(entered), len(exited)


def _parts(items: list[T], size: int = 5000) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def refresh_segments(
    conn: sa.Connection,
    profile_ids: Iterable[str] | None = None,
    now: datetime | None = None,
    retry_failed: bool | None = None,
) -> int:
    """Refresh every segment (for these profiles, or all); returns how many failed.

    Segments marked failed are skipped unless `retry_failed` (default: only in a refresh of all
    profiles, i.e. the scheduled one), so a broken segment costs live processing nothing."""
    now = now or datetime.now(UTC)
    ids = None if profile_ids is None else list(profile_ids)
    retry = ids is None if retry_failed is None else retry_failed
    failed = failures.failures(conn, "segment")
    rows = conn.execute(
        sa.select(segments.c.id, segments.c.name, segments.c.criteria).order_by(segments.c.id)
    ).all()
    count = 0
    for row in rows:
        previous = failed.get(row.name)
        if previous is not None and not retry:
            count += 1
            continue
        work = partial(refresh, conn, row.id, row.criteria, now, ids)
        count += not failures.attempt(conn, "segment", row.name, work, now, previous)
    return count
