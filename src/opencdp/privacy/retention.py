"""Retention: raw events older than a source's retention period are deleted by a scheduled job.
Profiles keep what was derived from them (traits, computed traits, consent, behaviour facts);
a later `rebuild` can only rebuild from what the log still holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.access.keys import AccessError
from opencdp.process.processor import PROCESSOR, read_checkpoint
from opencdp.store.dialect import lock_for_processing
from opencdp.store.schema import event_owners, events, sources

BATCH = 5000


def set_retention(engine: sa.Engine, source: str, days: int | None) -> None:
    if days is not None and days < 1:
        raise AccessError("retention must be at least 1 day (or none to keep events forever)")
    with engine.begin() as conn:
        if (
            conn.execute(
                sources.update().where(sources.c.name == source).values(retention_days=days)
            ).rowcount
            == 0
        ):
            raise AccessError(f"no source named {source!r}")


def apply_retention(engine: sa.Engine, now: datetime | None = None) -> dict[str, int]:
    """Delete expired raw events of every source with a retention period; returns counts per source.
    Only events the processor has already applied are deleted, so nothing is lost for profiles."""
    now = now or datetime.now(UTC)
    deleted: dict[str, int] = {}
    with engine.connect() as conn:
        policies = conn.execute(
            sa.select(sources.c.id, sources.c.name, sources.c.retention_days).where(
                sources.c.retention_days.is_not(None)
            )
        ).all()
    for policy in policies:
        cutoff = now - timedelta(days=policy.retention_days)
        total = 0
        while True:
            with engine.begin() as conn:
                lock_for_processing(conn, PROCESSOR)
                done = read_checkpoint(conn)
                ids = [
                    r[0]
                    for r in conn.execute(
                        sa.select(events.c.id)
                        .where(
                            events.c.source_id == policy.id, events.c.timestamp < cutoff, events.c.id <= done
                        )
                        .limit(BATCH)
                    )
                ]
                if ids:
                    conn.execute(event_owners.delete().where(event_owners.c.event_id.in_(ids)))
                    conn.execute(events.delete().where(events.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < BATCH:
                break
        deleted[policy.name] = total
    return deleted
