"""Scheduled work: time windows expire without new events ("no order in 90 days"), so computed
traits and memberships of all profiles are refreshed periodically and on demand.

This is also where definitions marked failed are tried again (live processing skips them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from opencdp.process.processor import PROCESSOR
from opencdp.segments.memberships import refresh_segments
from opencdp.store.dialect import lock_for_processing
from opencdp.store.schema import profiles
from opencdp.traits.store import refresh_computed

BATCH = 2000


def live_profile_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
            ).scalar_one()
        )


def refresh_all(
    engine: sa.Engine, now: datetime | None = None, on_progress: Callable[[int], None] | None = None
) -> int:
    """Recompute computed traits of every live profile (in batches, each its own short locked
    transaction so live processing goes on in between), then every segment's memberships.
    Failed definitions are retried (traits in the first batch: if one fails again, the other
    batches skip it)."""
    now = now or datetime.now(UTC)
    after, done = "", 0
    while True:
        with engine.begin() as conn:
            lock_for_processing(conn, PROCESSOR)
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(profiles.c.id)
                    .where(profiles.c.merged_into.is_(None), profiles.c.id > after)
                    .order_by(profiles.c.id)
                    .limit(BATCH)
                )
            ]
            if not ids:
                break
            refresh_computed(conn, ids, now, retry_failed=done == 0)
        after, done = ids[-1], done + len(ids)
        if on_progress:
            on_progress(len(ids))
    with engine.begin() as conn:
        lock_for_processing(conn, PROCESSOR)
        refresh_segments(conn, None, now, retry_failed=True)
    from opencdp.privacy.retention import apply_retention

    apply_retention(engine, now)
    return done
