"""A small synthetic shop with a planted signal, written straight into `profiles` and `profile_events`
(what the processor would have filled): profiles that viewed products in the last week are ten
times as likely to order on a given day."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.store.schema import profile_events, profiles

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

Event = tuple[str, str, str, datetime, dict[str, Any]]  # (profile, type, name, ts, properties)


def histories(n: int, seed: int = 1, days: int = 100, now: datetime = NOW) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        pid = f"p{i:05d}"
        activity = rng.choice((0.01, 0.04, 0.1, 0.25))
        opens = rng.random() < 0.5
        last_view: int | None = None
        for d in range(days, 0, -1):
            start = now - timedelta(days=d) + timedelta(seconds=rng.randrange(80_000))
            if rng.random() < activity:
                out.append((pid, "page", "Home", start, {}))
                for k in range(rng.randint(1, 3)):
                    out.append((pid, "track", "Product Viewed", start + timedelta(seconds=k + 1), {}))
                last_view = d
            if opens and rng.random() < 0.1:
                out.append((pid, "track", "Email Opened", start + timedelta(seconds=30), {}))
            recent = last_view is not None and last_view - d < 7
            if rng.random() < (0.03 if recent else 0.003):
                revenue = round(rng.uniform(10, 200), 2)
                order_ts = start + timedelta(hours=1)
                out.append((pid, "track", "Order Completed", order_ts, {"revenue": revenue}))
    return out


def load(engine: sa.Engine, events: list[Event], merged: dict[str, str] | None = None) -> None:
    """Replace all profiles and profile events (profiles merged into another one: `merged`)."""
    merged = merged or {}
    ids = sorted({e[0] for e in events} | set(merged))
    with engine.begin() as conn:
        conn.execute(profile_events.delete())
        conn.execute(profiles.delete())
        conn.execute(
            profiles.insert(),
            [
                {
                    "id": pid,
                    "merged_into": merged.get(pid),
                    "anchor": [["", "", 0], [0, "", ""], "user_id", pid],
                    "last_edge_key": ["", "", 0],
                    "identity_counts": {},
                    "traits": {},
                    "trait_meta": {},
                    "event_counts": {},
                    "first_seen": None,
                    "last_seen": None,
                    "updated_at": NOW,
                }
                for pid in ids
            ],
        )
        add(conn, events)


def add(conn: sa.Connection, events: list[Event], first_id: int = 1) -> None:
    if events:
        conn.execute(
            profile_events.insert(),
            [
                {
                    "event_id": n,
                    "profile_id": pid,
                    "type": kind,
                    "name": name,
                    "ts": ts,
                    "source_id": 1,
                    "properties": props,
                }
                for n, (pid, kind, name, ts, props) in enumerate(events, start=first_id)
            ],
        )
