"""The outbox: decisions to send, written by the caller in the transaction of the state change
that caused them (a processed event, a membership change, a journey step), so a decision is never
lost and never made without its cause. The delivery worker sends them later, outside that
transaction. A key names each decision: written twice (a rebuild, a retried transaction) it is
still one delivery, and receivers de-duplicate retries by it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import activation_marks, deliveries

PENDING, SENDING, DELIVERED, DEAD, SKIPPED = "pending", "sending", "delivered", "dead", "skipped"
STATUSES = (PENDING, SENDING, DELIVERED, DEAD, SKIPPED)


def decision(
    destination_id: int,
    key: str,
    kind: str,
    subject: dict[str, Any],
    profile_id: str | None = None,
    event_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One outbox row (not yet written)."""
    now = at or datetime.now(UTC)
    return {
        "destination_id": destination_id,
        "key": key,
        "kind": kind,
        "subject": subject,
        "profile_id": profile_id,
        "event_id": event_id,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def write(conn: sa.Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Add decisions to the outbox in the caller's transaction (a key already there is kept)."""
    batch = list(rows)
    for start in range(0, len(batch), 2000):
        conn.execute(
            insert_ignoring_duplicates(conn.dialect.name, deliveries, ["key"]), batch[start : start + 2000]
        )
    return len(batch)


def read_mark(conn: sa.Connection, name: str) -> int | None:
    return conn.execute(sa.select(activation_marks.c.value).where(activation_marks.c.name == name)).scalar()


def set_mark(conn: sa.Connection, name: str, value: int) -> None:
    if (
        conn.execute(
            activation_marks.update().where(activation_marks.c.name == name).values(value=value)
        ).rowcount
        == 0
    ):
        conn.execute(activation_marks.insert().values(name=name, value=value))


def view(row: Any) -> dict[str, Any]:
    """A delivery as shown in the dashboard, CLI and API (no personal data: ids and errors)."""
    return {
        "id": row.id,
        "destination_id": row.destination_id,
        "key": row.key,
        "kind": row.kind,
        "profile_id": row.profile_id,
        "event_id": row.event_id,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "last_error": row.last_error,
    }


def find(
    conn: sa.Connection,
    status: str | None = None,
    destination_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Deliveries, newest first (e.g. the dead letters of one destination)."""
    query = sa.select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if destination_id is not None:
        query = query.where(deliveries.c.destination_id == destination_id)
    if before_id is not None:
        query = query.where(deliveries.c.id < before_id)
    return [view(r) for r in conn.execute(query)]


def replay(
    conn: sa.Connection,
    ids: Sequence[int] | None = None,
    destination_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Send dead letters again (these, or all of a destination, or all): pending now, attempts
    reset, same idempotency key. Returns how many."""
    query = deliveries.update().where(deliveries.c.status == DEAD)
    if ids is not None:
        query = query.where(deliveries.c.id.in_(list(ids)))
    if destination_id is not None:
        query = query.where(deliveries.c.destination_id == destination_id)
    when = now or datetime.now(UTC)
    # created_at restarts too: the retry window counts from the replay
    return int(
        conn.execute(
            query.values(
                status=PENDING,
                attempts=0,
                next_attempt_at=when,
                created_at=when,
                finished_at=None,
                claim=None,
            )
        ).rowcount
    )


def prune(conn: sa.Connection, before: datetime) -> int:
    """Forget deliveries that finished well and long ago (dead letters stay until replayed or
    their destination is deleted)."""
    return int(
        conn.execute(
            deliveries.delete().where(
                deliveries.c.status.in_([DELIVERED, SKIPPED]), deliveries.c.finished_at < before
            )
        ).rowcount
    )


def summary(conn: sa.Connection, now: datetime | None = None) -> dict[str, Any]:
    """The outbox at a glance (health, `opencdp status`, /metrics): deliveries waiting, how long
    the oldest has waited, dead letters, destinations whose circuit is open."""
    from opencdp.store.schema import destinations

    now = now or datetime.now(UTC)
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(deliveries.c.status, sa.func.count())
            .where(deliveries.c.status.in_([PENDING, SENDING, DEAD]))
            .group_by(deliveries.c.status)
        ).all()
    )
    oldest = conn.execute(
        sa.select(sa.func.min(deliveries.c.created_at)).where(deliveries.c.status.in_([PENDING, SENDING]))
    ).scalar()
    circuits = list(
        conn.execute(
            sa.select(destinations.c.name)
            .where(destinations.c.open_until.is_not(None))
            .order_by(destinations.c.name)
        ).scalars()
    )
    return {
        "deliveries_waiting": int(counts.get(PENDING, 0) + counts.get(SENDING, 0)),
        "oldest_waiting_seconds": round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else 0.0,
        "dead_letters": int(counts.get(DEAD, 0)),
        "circuits_open": circuits,
    }
