"""Putting profiles and events straight into the derived tables, for segment tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.segments.compiler import members_query
from opencdp.segments.language import parse_criteria, to_document
from opencdp.segments.oracle import OracleEvent, OracleProfile, evaluate
from opencdp.store.schema import profile_events, profiles, segment_memberships, segment_transitions, segments

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def load(engine: sa.Engine, world: dict[str, OracleProfile]) -> None:
    """Replace all profiles and profile events with this world."""
    with engine.begin() as conn:
        for table in (segment_transitions, segment_memberships, segments, profile_events, profiles):
            conn.execute(table.delete())
        if not world:
            return
        conn.execute(
            profiles.insert(),
            [
                {
                    "id": pid,
                    "merged_into": None,
                    "anchor": [["", "", 0], [0, "", ""], "user_id", pid],
                    "last_edge_key": ["", "", 0],
                    "identity_counts": {},
                    "traits": p.traits,
                    "trait_meta": {},
                    "event_counts": {},
                    "first_seen": None,
                    "last_seen": None,
                    "updated_at": NOW,
                    "computed": p.computed,
                    "predicted": p.predicted or None,
                }
                for pid, p in world.items()
            ],
        )
        rows = [
            {
                "event_id": n,
                "profile_id": pid,
                "type": e.type,
                "name": e.name,
                "ts": e.ts,
                "source_id": 1,
                "properties": e.properties,
            }
            for n, (pid, e) in enumerate(((pid, e) for pid, p in world.items() for e in p.events), start=1)
        ]
        if rows:
            conn.execute(profile_events.insert(), rows)


def profile(
    traits: dict[str, Any] | None = None,
    computed: dict[str, Any] | None = None,
    events: list[tuple[str, int, dict[str, Any]]] | None = None,
    predicted: dict[str, Any] | None = None,
) -> OracleProfile:
    """events: (name, days ago, properties)."""
    from datetime import timedelta

    return OracleProfile(
        traits or {},
        computed or {},
        [OracleEvent(name, "track", NOW - timedelta(days=days), props) for name, days, props in events or []],
        predicted or {},
    )


def assert_selects(
    engine: sa.Engine, world: dict[str, OracleProfile], criteria: Any, expected: set[str]
) -> Any:
    """SQL and oracle both select `expected` from `world`, and the stored form round-trips."""
    load(engine, world)
    parsed = parse_criteria(criteria)
    with engine.connect() as conn:
        got = {r[0] for r in conn.execute(members_query(parsed, NOW))}
    assert got == expected
    assert {pid for pid, p in world.items() if evaluate(parsed, p, NOW)} == expected
    assert parse_criteria(to_document(parsed)) == parsed  # the stored form round-trips
    return parsed
