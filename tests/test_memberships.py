"""Computed traits and memberships kept up to date by processing and by the scheduled refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.process.schedule import refresh_all
from opencdp.segments import store
from opencdp.segments.oracle import OracleEvent
from opencdp.store.schema import profiles, segment_memberships, segment_transitions
from opencdp.system import OpenCDP
from opencdp.traits.compute import compute_all, derive
from opencdp.traits.definitions import BUILT_IN, ComputedTrait, EventFilter
from opencdp.traits.store import define
from tests.identity_helpers import log_messages, process, profile_of


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def computed_of(cdp: OpenCDP, user: str) -> dict[str, object]:
    with cdp.engine.connect() as conn:
        return dict(
            conn.execute(
                sa.select(profiles.c.computed).where(profiles.c.id == profile_of(cdp.engine, "user_id", user))
            ).scalar_one()
            or {}
        )


def test_builtin_traits_from_orders_and_engagement() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    events = [
        OracleEvent(
            "Order Completed", "track", now - timedelta(days=5), {"revenue": 120.0, "category": "shoes"}
        ),
        OracleEvent(
            "Order Completed", "track", now - timedelta(days=50), {"revenue": 30, "category": "kids"}
        ),
        OracleEvent(
            "Order Completed", "track", now - timedelta(days=400), {"revenue": "n/a", "category": "shoes"}
        ),
        OracleEvent("Email Opened", "track", now - timedelta(days=3), {}),
        OracleEvent("Email Link Clicked", "track", now - timedelta(days=3), {}),
        OracleEvent("Home", "page", now - timedelta(days=1), {}),
    ]
    values = compute_all(BUILT_IN, events, now)
    assert values["order_count"] == 3 and values["orders_last_365_days"] == 2
    assert values["total_revenue"] == 150.0  # the text "n/a" is not a number
    assert values["average_order_value"] == 75.0
    assert values["favourite_category"] == "shoes" and values["categories_ordered"] == ["kids", "shoes"]
    assert values["last_order_at"] == iso(now - timedelta(days=5))
    assert values["rfm_r"] == 5 and values["rfm_f"] == 2 and values["rfm_m"] == 2
    assert values["rfm_score"] == "522" and values["rfm_segment"] == "Potential loyalist"
    assert values["engagement_score"] == 13.0  # 1 page + 4 per open + 8 per click
    assert derive({}, now) == {"engagement_score": 0.0}  # no orders: no RFM at all


def test_traits_and_memberships_follow_events_in_real_time(cdp: OpenCDP) -> None:
    now = datetime.now(UTC)
    store.save(cdp.engine, "repeat buyers", {"computed": "order_count", "op": "gte", "value": 2})
    store.save(
        cdp.engine,
        "recent shoes",
        {
            "event": "Order Completed",
            "within_days": 30,
            "where": [{"property": "category", "value": "shoes"}],
        },
    )
    log_messages(
        cdp.engine,
        [
            {
                "type": "track",
                "userId": "u1",
                "event": "Order Completed",
                "properties": {"revenue": 40, "category": "shoes"},
                "timestamp": iso(now - timedelta(days=2)),
            }
        ],
    )
    process(cdp.engine)
    assert computed_of(cdp, "u1")["order_count"] == 1
    log_messages(
        cdp.engine,
        [
            {
                "type": "track",
                "userId": "u1",
                "event": "Order Completed",
                "properties": {"revenue": 60, "category": "bags"},
                "timestamp": iso(now - timedelta(days=1)),
            }
        ],
    )
    process(cdp.engine)
    assert computed_of(cdp, "u1")["total_revenue"] == 100.0
    pid = profile_of(cdp.engine, "user_id", "u1")
    with cdp.engine.connect() as conn:
        changes = conn.execute(
            sa.select(segment_transitions.c.segment_id, segment_transitions.c.change)
            .where(segment_transitions.c.profile_id == pid)
            .order_by(segment_transitions.c.id)
        ).all()
    assert [c.change for c in changes] == ["entered", "entered"]
    # 40 days later the shoe order has left the window: the scheduled refresh lets them exit
    refresh_all(cdp.engine, now=now + timedelta(days=40))
    with cdp.engine.connect() as conn:
        rows = {
            r.segment_id: r
            for r in conn.execute(
                sa.select(segment_memberships).where(segment_memberships.c.profile_id == pid)
            )
        }
        exits = conn.execute(
            sa.select(segment_transitions).where(segment_transitions.c.change == "exited")
        ).all()
    recent = store.get(cdp.engine, "recent shoes").id
    repeat = store.get(cdp.engine, "repeat buyers").id
    assert rows[recent].exited_at is not None and rows[repeat].exited_at is None
    assert [e.segment_id for e in exits] == [recent]


def test_merge_moves_membership_to_the_survivor(cdp: OpenCDP) -> None:
    store.save(cdp.engine, "openers", {"event": "Email Opened"})
    log_messages(
        cdp.engine,
        [
            {
                "type": "track",
                "anonymousId": "a1",
                "event": "Email Opened",
                "timestamp": "2026-05-01T10:00:00Z",
            }
        ],
    )
    process(cdp.engine)
    anon = profile_of(cdp.engine, "anonymous_id", "a1")
    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "zz", "timestamp": "2026-04-01T10:00:00Z"},
            {"type": "identify", "userId": "zz", "anonymousId": "a1", "timestamp": "2026-05-02T10:00:00Z"},
        ],
    )
    process(cdp.engine)
    survivor = profile_of(cdp.engine, "user_id", "zz")
    assert survivor != anon
    with cdp.engine.connect() as conn:
        current = {
            r.profile_id
            for r in conn.execute(
                sa.select(segment_memberships).where(segment_memberships.c.exited_at.is_(None))
            )
        }
    assert current == {survivor}


def test_custom_computed_trait(cdp: OpenCDP) -> None:
    define(
        cdp.engine,
        ComputedTrait(
            name="shoe_spend_90d",
            kind="sum",
            property="revenue",
            window_days=90,
            filter=EventFilter(event="Order Completed", where=[{"property": "category", "value": "shoes"}]),
        ),
    )
    now = datetime.now(UTC)
    log_messages(
        cdp.engine,
        [
            {
                "type": "track",
                "userId": "c1",
                "event": "Order Completed",
                "timestamp": iso(now - timedelta(days=d)),
                "properties": {"revenue": r, "category": c},
            }
            for d, r, c in ((1, 10, "shoes"), (5, 15.5, "shoes"), (200, 99, "shoes"), (2, 50, "bags"))
        ],
    )
    process(cdp.engine)
    assert computed_of(cdp, "c1")["shoe_spend_90d"] == 25.5
