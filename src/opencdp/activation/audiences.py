"""Audience sync: a saved segment's entries and exits sent to a destination, incrementally.

What each sync has told its destination is kept per profile (`audience_sync_members`, not reset
by a rebuild), and a change is sent only where the segment now differs from it: re-processing
the log, a rebuild or a segment refreshed twice sends nothing twice. A new sync starts with a
backfill: every current member, in the transaction that creates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.activation import outbox
from opencdp.activation.destinations import DestinationError, get_row
from opencdp.store.schema import (
    audience_sync_members,
    audience_syncs,
    deliveries,
    segment_memberships,
    segments,
)

_PART = 5000


def create_sync(conn: sa.Connection, segment_name: str, destination_id: int) -> tuple[int, int]:
    """Start syncing a segment to a destination; returns (sync id, members backfilled)."""
    get_row(conn, destination_id)
    segment_id = conn.execute(sa.select(segments.c.id).where(segments.c.name == segment_name)).scalar()
    if segment_id is None:
        raise DestinationError("segment", f"no segment named {segment_name!r}", 404)
    if conn.execute(
        sa.select(audience_syncs.c.id).where(
            audience_syncs.c.segment_id == segment_id, audience_syncs.c.destination_id == destination_id
        )
    ).first():
        raise DestinationError("segment", f"{segment_name!r} is already synced to this destination", 409)
    now = datetime.now(UTC)
    sync_id = int(
        conn.execute(
            audience_syncs.insert().values(
                segment_id=segment_id, destination_id=destination_id, enabled=True, created_at=now
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )
    members = list(
        conn.execute(
            sa.select(segment_memberships.c.profile_id)
            .where(segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None))
            .order_by(segment_memberships.c.profile_id)
        ).scalars()
    )
    _send(conn, sync_id, destination_id, segment_id, members, [], {}, now)
    conn.execute(audience_syncs.update().where(audience_syncs.c.id == sync_id).values(backfilled_at=now))
    return sync_id, len(members)


def delete_sync(conn: sa.Connection, sync_id: int) -> None:
    """Stop syncing (the destination keeps its members; pending changes still go)."""
    if conn.execute(audience_syncs.delete().where(audience_syncs.c.id == sync_id)).rowcount == 0:
        raise DestinationError("sync", f"no audience sync with id {sync_id}", 404)
    conn.execute(audience_sync_members.delete().where(audience_sync_members.c.sync_id == sync_id))


def forget_segment(conn: sa.Connection, segment_id: int) -> None:
    """A deleted segment's syncs go with it."""
    ids = list(
        conn.execute(
            sa.select(audience_syncs.c.id).where(audience_syncs.c.segment_id == segment_id)
        ).scalars()
    )
    for sync_id in ids:
        delete_sync(conn, sync_id)


def emit_changes(
    conn: sa.Connection, segment_id: int, entered: Sequence[str], exited: Sequence[str], now: datetime
) -> int:
    """Decide, in the transaction that changed the memberships, what each sync of this segment
    must send; returns how many deliveries were written."""
    if not entered and not exited:
        return 0
    syncs = conn.execute(
        sa.select(audience_syncs.c.id, audience_syncs.c.destination_id).where(
            audience_syncs.c.segment_id == segment_id, audience_syncs.c.enabled.is_(True)
        )
    ).all()
    total = 0
    for sync in syncs:
        known: dict[str, tuple[bool, int]] = {}
        ids = sorted({*entered, *exited})
        for start in range(0, len(ids), _PART):
            known.update(
                (r.profile_id, (r.member, r.version))
                for r in conn.execute(
                    sa.select(
                        audience_sync_members.c.profile_id,
                        audience_sync_members.c.member,
                        audience_sync_members.c.version,
                    ).where(
                        audience_sync_members.c.sync_id == sync.id,
                        audience_sync_members.c.profile_id.in_(ids[start : start + _PART]),
                    )
                )
            )
        adds = [p for p in entered if not known.get(p, (False, 0))[0]]
        removes = [p for p in exited if known.get(p, (False, 0))[0]]
        total += _send(conn, sync.id, sync.destination_id, segment_id, adds, removes, known, now)
    return total


def _send(
    conn: sa.Connection,
    sync_id: int,
    destination_id: int,
    segment_id: int,
    adds: Sequence[str],
    removes: Sequence[str],
    known: dict[str, tuple[bool, int]],
    now: datetime,
) -> int:
    rows: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for action, members in (("add", adds), ("remove", removes)):
        for pid in members:
            version = known.get(pid, (False, 0))[1] + 1
            rows.append(
                outbox.decision(
                    destination_id,
                    f"aud-{sync_id}-{pid}-{version}",
                    "audience",
                    {"sync": sync_id, "segment": segment_id, "action": action},
                    pid,
                    None,
                    now,
                )
            )
            states.append(
                {"sync_id": sync_id, "profile_id": pid, "member": action == "add", "version": version}
            )
    if not rows:
        return 0
    outbox.write(conn, rows)
    stored = [s for s in states if s["profile_id"] in known]
    for start in range(0, len(stored), _PART):
        part = stored[start : start + _PART]
        conn.execute(
            audience_sync_members.update()
            .where(
                audience_sync_members.c.sync_id == sa.bindparam("s"),
                audience_sync_members.c.profile_id == sa.bindparam("p"),
            )
            .values(member=sa.bindparam("m"), version=sa.bindparam("v")),
            [{"s": x["sync_id"], "p": x["profile_id"], "m": x["member"], "v": x["version"]} for x in part],
        )
    new = [s for s in states if s["profile_id"] not in known]
    for start in range(0, len(new), _PART):
        conn.execute(audience_sync_members.insert(), new[start : start + _PART])
    return len(rows)


def list_syncs(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every sync with its status: members sent, deliveries pending/failed, last success."""
    counts: dict[int, dict[str, int]] = {}
    sync_of = sa.cast(deliveries.c.subject["sync"].as_string(), sa.Integer)
    for sync_id, status, n in conn.execute(
        sa.select(sync_of, deliveries.c.status, sa.func.count())
        .where(deliveries.c.kind == "audience")
        .group_by(sync_of, deliveries.c.status)
    ):
        counts.setdefault(int(sync_id), {})[status] = n
    last: dict[int, datetime] = dict(
        conn.execute(
            sa.select(sync_of, sa.func.max(deliveries.c.finished_at))
            .where(deliveries.c.kind == "audience", deliveries.c.status == outbox.DELIVERED)
            .group_by(sync_of)
        ).all()
    )
    members: dict[int, int] = dict(
        conn.execute(
            sa.select(audience_sync_members.c.sync_id, sa.func.count())
            .where(audience_sync_members.c.member.is_(True))
            .group_by(audience_sync_members.c.sync_id)
        ).all()
    )
    rows = conn.execute(
        sa.select(audience_syncs, segments.c.name.label("segment"))
        .join(segments, segments.c.id == audience_syncs.c.segment_id)
        .order_by(audience_syncs.c.id)
    ).all()
    out = []
    for r in rows:
        c = counts.get(r.id, {})
        out.append(
            {
                "id": r.id,
                "segment": r.segment,
                "destination_id": r.destination_id,
                "enabled": r.enabled,
                "members_sent": members.get(r.id, 0),
                "pending": c.get(outbox.PENDING, 0) + c.get(outbox.SENDING, 0),
                "delivered": c.get(outbox.DELIVERED, 0),
                "failed": c.get(outbox.DEAD, 0),
                "skipped": c.get(outbox.SKIPPED, 0),
                "last_success_at": last[r.id].isoformat() if last.get(r.id) else None,
                "backfilled_at": r.backfilled_at.isoformat() if r.backfilled_at else None,
            }
        )
    return out
