"""Advocacy on hand-built shares and the visits, sign-ups and orders that come back through them, on
SQLite and PostgreSQL: every counter, attribution only to other people, the score, point in time."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.demo.shop import ShopGenerator
from opencdp.predict import runner
from opencdp.predict.advocacy import DEFAULTS, JOBS, advocacy_score
from opencdp.predict.model import TooThin
from opencdp.segments.store import checked_query
from opencdp.store.schema import profiles, segment_memberships, segments
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process
from tests.predict.helpers import scores_by_user

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
DAY = 24 * 60
_counter = iter(range(1_000_000))


def message(kind: str, who: str, minutes: float, **fields: Any) -> dict[str, Any]:
    """A message by user `who` (or, as "anon:x", by an anonymous visitor) `minutes` after T0."""
    person = {"anonymousId": who[5:]} if who.startswith("anon:") else {"userId": who}
    return {
        "type": kind,
        **person,
        "messageId": f"a{next(_counter)}",
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        **fields,
    }


def shared(who: str, minutes: float, share_id: str) -> dict[str, Any]:
    return message("track", who, minutes, event="Product Shared", properties={"share_id": share_id})


def visit(who: str, minutes: float, share_id: str) -> dict[str, Any]:
    campaign = {"name": "product_share", "medium": "social", "content": share_id}
    return message("page", who, minutes, name="Product", context={"campaign": campaign})


def track(who: str, minutes: float, event: str, **properties: Any) -> dict[str, Any]:
    return message("track", who, minutes, event=event, properties=properties)


WORLD = [
    shared("sam", 0, "s1"),
    shared("sam", 10, "s2"),
    visit("sam", 5, "s1"),  # the sharer on their own link: nothing
    track("sam", 6, "Order Completed", share_id="s1", revenue=99),  # nor their own order
    # an anonymous visitor through s1, twice (one visit), who signs up and orders through it
    visit("anon:dev-v", 20, "s1"),
    visit("anon:dev-v", 25, "s1"),
    message("identify", "val", 29, anonymousId="dev-v", traits={"email": "val@example.com"}),
    track("val", 30, "Signed Up"),
    message(
        "track",
        "val",
        40,
        event="Order Completed",
        properties={"revenue": 50},
        context={"campaign": {"content": "s1"}},
    ),
    track("val", 45, "Order Completed", revenue=500),  # no share id: not the share's
    # through s2 with the id in the page's properties; signs up after the 30-day window
    message("page", "wes", 50, name="Product", properties={"share_id": "s2"}),
    track("wes", 50 + 31 * DAY, "Signed Up"),
    track("xena", 60, "Signed Up", share_id="s2"),  # the sign-up itself names the share
    message(
        "track",
        "yuri",
        70,
        event="Order Completed",
        properties={"total": 20},
        context={"referrer": {"type": "share", "id": "s2"}},
    ),
    visit("zed", 80, "nobody-shared-this"),
    # a newsletter's UTM content first, the share id after it: still the share's visit
    message(
        "page", "vic", 90, context={"campaign": {"content": "newsletter-7"}}, properties={"share_id": "s2"}
    ),
    # only the link's address names the share (no UTM content kept)
    message("page", "una", 95, context={"page": {"url": "https://shop.example/p/1?utm_source=x&share=s2"}}),
    message("page", "una", 96, properties={"url": "https://shop.example/p/1?reshare=s1"}),  # not `share`
    shared("pia", 0, "p1"),
    *[shared("quin", n, f"q{n}") for n in range(10)],
    track("rob", 0, "Product Shared"),  # a share without an id: counted as a share, brings nothing
]
AT = T0 + timedelta(days=40)
LATER = [  # after AT
    shared("tom", 40 * DAY + 10, "t1"),
    visit("uma", 40 * DAY + 20, "t1"),
    visit("uma", 40 * DAY + 30, "s1"),
    track("uma", 40 * DAY + 40, "Order Completed", share_id="s1", revenue=10),
]


def _score(system: OpenCDP, moment: datetime, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return scores_by_user(system, "advocacy", moment, **options)


def test_shares_bring_visits_signups_and_orders_of_others_only(system: OpenCDP) -> None:
    log_messages(system.engine, WORLD)
    process(system.engine)
    scores, quality = _score(system, AT)

    points = 2 * 1 + 4 * 2 + 2 * 5 + 2 * 10
    assert scores["sam"] == {
        "shares": 2,
        "share_visits": 4,  # val through s1 (twice: one visit), wes, vic, una through s2; not sam, zed
        "share_signups": 2,  # val after the visit; xena naming s2; not wes (31 days later)
        "share_orders": 2,  # val's through s1 and yuri's through s2; not sam's own, not val's second
        "share_revenue": 70.0,
        "advocacy_score": round(100 * math.log1p(points) / math.log1p(200), 1),
        "advocate": True,
    }
    assert scores["pia"]["advocacy_score"] == 13.1 and scores["pia"]["advocate"] is False
    assert scores["quin"]["shares"] == 10 and scores["quin"]["advocacy_score"] >= 40
    assert scores["quin"]["advocate"] is False  # sharing often is not advocacy until someone comes
    assert scores["rob"]["shares"] == 1 and scores["rob"]["share_visits"] == 0
    assert set(scores) == {"sam", "pia", "quin", "rob"}  # only those who shared
    assert quality == {
        "sharers": 4,
        "shares": 14,
        "share_visits": 4,
        "share_signups": 2,
        "share_orders": 2,
        "share_revenue": 70.0,
        "sharers_who_brought_someone": 1,
        "advocates": 1,
    }


def test_nothing_after_at_counts(system: OpenCDP) -> None:
    log_messages(system.engine, WORLD)
    process(system.engine)
    before = _score(system, AT)
    log_messages(system.engine, LATER)
    process(system.engine)
    assert _score(system, AT) == before
    after, _ = _score(system, AT + timedelta(days=2))
    assert after["tom"]["share_visits"] == 1
    assert (after["sam"]["share_visits"], after["sam"]["share_orders"]) == (5, 3)
    assert after["sam"]["share_revenue"] == 80.0


def test_options_change_the_events_paths_and_threshold(system: OpenCDP) -> None:
    log_messages(
        system.engine,
        [
            track("ann", 0, "Referral Sent", code="r1"),
            message("page", "ben", 5, name="Home", context={"campaign": {"content": "r1"}}),
            message("page", "cal", 6, name="Home", properties={"ref": "r1"}),
            track("cal", 7, "Purchase", amount=12.5, ref="r1"),
        ],
    )
    process(system.engine)
    options = {
        "share_events": ["Referral Sent"],
        "share_id_property": "code",
        "share_id_paths": [["properties", "ref"]],
        "order_events": ["Purchase"],
        "revenue_properties": ["amount"],
        "threshold": 90,
    }
    scores, _ = _score(system, T0 + timedelta(days=1), **options)
    ann = scores["ann"]
    assert (ann["shares"], ann["share_visits"], ann["share_orders"], ann["share_revenue"]) == (1, 1, 1, 12.5)
    assert ann["advocate"] is False  # 1 + 2 + 10 points: 49.7, under 90
    with pytest.raises(ValueError, match="share_id_paths"):
        JOBS["advocacy"].fit(system.engine, T0, {"share_id_paths": ["context.campaign.content"]})
    with pytest.raises(ValueError, match="no path or address parameter"):
        JOBS["advocacy"].fit(system.engine, T0, {"share_id_paths": [], "share_id_url_parameters": []})
    with pytest.raises(TooThin, match="nobody shared"):
        JOBS["advocacy"].fit(system.engine, T0 + timedelta(days=1), {})


def test_the_score_is_log_scaled_and_capped() -> None:
    params = dict(DEFAULTS)
    assert advocacy_score({}, params) == 0.0
    assert advocacy_score({"shares": 1}, params) == 13.1
    assert advocacy_score({"shares": 1, "visits": 1, "signups": 1}, params) == 41.4
    assert advocacy_score({"shares": 1, "visits": 1, "signups": 1, "orders": 1}, params) == 55.5
    assert advocacy_score({"orders": 1000}, params) == 100.0


DEMO_NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the SQL is covered on both elsewhere
def test_demo_shop_gives_advocates_and_channel_preferences(system: OpenCDP) -> None:
    """Through the runner that stores models and traits: the planted sharers and e-mail ignorers
    come out, and an "advocates" segment finds them (channels: tests/predict/test_channels.py)."""
    generator = ShopGenerator(customers=300, seed=7, now=DEMO_NOW)
    shop = list(generator.events())
    log_messages(system.engine, [e.message for e in shop])
    process(system.engine)
    planted = generator.stats

    advocacy = runner.fit(system.engine, "advocacy", DEMO_NOW)
    assert runner.score(system.engine, "advocacy", DEMO_NOW) == advocacy.quality["sharers"] > 0
    channels = runner.fit(system.engine, "channels", DEMO_NOW)
    runner.score(system.engine, "channels", DEMO_NOW)
    with system.engine.connect() as conn:
        predicted = [p or {} for p in conn.execute(sa.select(profiles.c.predicted)).scalars()]
        advocates = checked_query(conn, {"predicted": "advocate", "op": "eq", "value": True}, now=DEMO_NOW)[1]
        members = conn.execute(sa.select(sa.func.count()).select_from(advocates.subquery())).scalar_one()

    # every planted share, referred visitor and order through a share is found, and nothing else
    quality = advocacy.quality
    assert quality["shares"] == planted["Product Shared"]
    assert quality["share_visits"] == planted["referred visitors"]
    assert quality["share_orders"] == planted["orders through shares"] > 0
    share_revenue = sum(
        e.message["properties"]["revenue"]
        for e in shop
        if e.message.get("event") == "Order Completed" and "share_id" in e.message["properties"]
    )
    assert quality["share_revenue"] == pytest.approx(share_revenue, abs=0.01)
    assert 0 < quality["share_signups"] <= quality["share_visits"]
    assert members == quality["advocates"] > 0
    with system.engine.connect() as conn:  # the first scoring made the "Advocates" segment, once
        segment = conn.execute(
            sa.select(segments.c.id).where(segments.c.name == runner.ADVOCATES)
        ).scalar_one()
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(segment_memberships)
            .where(segment_memberships.c.segment_id == segment, segment_memberships.c.exited_at.is_(None))
        ).scalar_one()
    runner.score(system.engine, "advocacy", DEMO_NOW)
    runner.refresh_memberships(system.engine)
    assert stored == members
    sharers = [p for p in predicted if "shares" in p]
    assert all(p["advocate"] == (p["advocacy_score"] >= 40 and p["share_visits"] > 0) for p in sharers)

    # e-mail is the only channel with messages in the demo; a quarter of the recipients never open
    assert channels.quality["received"]["email"] == planted["Email Delivered"]
    assert channels.quality["responded"]["email"] <= planted["Email Opened"]
    preferences = Counter(p.get("preferred_channel") for p in predicted if "channels" in p)
    assert preferences["email"] == channels.quality["preferred"]["email"] > 0
    assert set(preferences) == {"email", None}
    ignorers = [p for p in predicted if p.get("channels", {}).get("email", {}).get("responses") == 0]
    assert ignorers and all(p["email_ignored_last"] == p["channels"]["email"]["received"] for p in ignorers)
    assert all(p["preferred_channel"] is None for p in ignorers)
    assert max(p["email_ignored_last"] for p in ignorers) >= 5
    openers = [p for p in predicted if p.get("preferred_channel") == "email"]
    assert all(0 < p["channels"]["email"]["response_rate"] <= 1 for p in openers)
    visitors = sum(1 for p in predicted if p.get("channels", {}).get("web", {}).get("responses", 0) > 0)
    assert visitors > len(predicted) // 2  # almost everyone browses
