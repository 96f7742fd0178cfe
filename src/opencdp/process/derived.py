"""Derived state of the profiles a chunk changed: computed traits and segment memberships.

Identity resolution is one canonical step that processors take in turns. What follows from it
per profile does not need turns: on PostgreSQL a chunk only queues the profiles it touched
(`enqueue`, in its transaction) and any worker refreshes them, in parallel by partition
(`refresh_queued`): a profile always falls in the same partition, and a partition is refreshed by
one worker at a time (a transaction-level advisory lock), so no two workers ever compute the same
profile at once and a later chunk's change is refreshed after an earlier one's. On SQLite (one
writer at a time) the chunk refreshes them itself, in its own transaction.
"""

from __future__ import annotations

import random
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp import metrics
from opencdp.store.schema import profile_refresh_queue, profiles

PARTS = 16
_shuffler = random.Random()  # not the global generator: other code (tests, hypothesis) owns that
#: profiles refreshed per transaction
BATCH = 1000


def part_of(profile_id: str) -> int:
    return zlib.crc32(profile_id.encode()) % PARTS


def update_derived_state(conn: sa.Connection, touched: set[str], now: datetime | None = None) -> None:
    """Computed traits and segment memberships of these profiles, in the caller's transaction."""
    from opencdp.journeys.triggers import on_trait_changes, watched_traits
    from opencdp.segments.memberships import refresh_segments
    from opencdp.traits.store import refresh_computed

    if not touched:
        return
    live = {
        r[0]
        for r in conn.execute(
            sa.select(profiles.c.id).where(
                profiles.c.id.in_(sorted(touched)), profiles.c.merged_into.is_(None)
            )
        )
    }
    now = now or datetime.now(UTC)
    watched = watched_traits(conn) if live else set()
    before = _computed(conn, live) if watched else {}
    refresh_computed(conn, live, now)
    if watched:
        after = _computed(conn, live)
        changes = {
            pid: {
                name: (before.get(pid, {}).get(name), value.get(name))
                for name in watched
                if before.get(pid, {}).get(name) != value.get(name)
            }
            for pid, value in after.items()
        }
        on_trait_changes(conn, {pid: c for pid, c in changes.items() if c}, now)
    refresh_segments(conn, touched, now)


def _computed(conn: sa.Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        found.update(
            (r.id, r.computed or {})
            for r in conn.execute(
                sa.select(profiles.c.id, profiles.c.computed).where(
                    profiles.c.id.in_(ordered[start : start + 500])
                )
            )
        )
    return found


def enqueue(conn: sa.Connection, touched: set[str]) -> None:
    if touched:
        conn.execute(
            profile_refresh_queue.insert(),
            [{"part": part_of(pid), "profile_id": pid} for pid in sorted(touched)],
        )


def refresh_queued(engine: sa.Engine, batch: int = BATCH) -> int:
    """Refresh one batch of one partition no other worker holds; returns how many queued
    profiles were done (0: nothing waiting, or every waiting partition is busy)."""
    parts = list(range(PARTS))
    _shuffler.shuffle(parts)  # workers spread over the partitions
    with engine.connect() as conn:
        waiting = set(conn.execute(sa.select(profile_refresh_queue.c.part).distinct()).scalars())
    for part in (p for p in parts if p in waiting):
        with engine.begin() as conn:
            if not conn.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
                {"name": f"opencdp:refresh:{part}"},
            ).scalar_one():
                continue
            rows = conn.execute(
                sa.select(profile_refresh_queue.c.id, profile_refresh_queue.c.profile_id)
                .where(profile_refresh_queue.c.part == part)
                .order_by(profile_refresh_queue.c.id)
                .limit(batch)
            ).all()
            if not rows:
                continue
            wanted = sorted({r.profile_id for r in rows})
            # Lock the profile rows without waiting: one that the identity step holds right now
            # stays queued for the next round (the identity step may be waiting for one of ours,
            # so waiting here could deadlock). A profile without a row (erased) is simply done.
            locked = set(
                conn.execute(
                    sa.select(profiles.c.id)
                    .where(profiles.c.id.in_(wanted))
                    .order_by(profiles.c.id)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            existing = set(conn.execute(sa.select(profiles.c.id).where(profiles.c.id.in_(wanted))).scalars())
            done = [pid for pid in wanted if pid in locked or pid not in existing]
            if not done:
                continue
            began = time.perf_counter()
            update_derived_state(conn, set(done))
            metrics.record_stage("derived", time.perf_counter() - began)
            conn.execute(
                profile_refresh_queue.delete().where(
                    profile_refresh_queue.c.part == part,
                    profile_refresh_queue.c.id <= rows[-1].id,
                    profile_refresh_queue.c.profile_id.in_(done),
                )
            )
            return len(rows)
    return 0


def queued(conn: sa.Connection) -> int:
    """Profiles waiting for their computed traits and memberships."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(profile_refresh_queue)).scalar_one())
