"""Property test: decisions agree with a plain-Python statement of the audience on random data.

Each example writes random visitors into the log (a trait, orders over past days, product views
minutes to hours ago, form errors), processes it, and asks for a decision on an experience whose one
variant has a random audience mixing history (traits, events, a segment), the session and the
page's context. The oracle below reads the generated data directly: the session is "the visitor's
events with no gap over 30 minutes up to now", the holiday is "25 December in DE, US or GB".
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencdp.collect.messages import Envelope, normalise
from opencdp.personalise.decide import Decider, parse_decide_request
from opencdp.privacy.consent_events import system_source_id
from opencdp.segments import store as segment_store
from opencdp.store.schema import experiences
from opencdp.system import OpenCDP

DAYS = {
    "christmas": datetime(2026, 12, 25, 12, tzinfo=UTC),
    "ordinary": datetime(2026, 12, 22, 12, tzinfo=UTC),
}
HOLIDAY_COUNTRIES = {"DE", "US", "GB"}
GAP = timedelta(minutes=30)
_visitors = itertools.count()

visitor_data = st.fixed_dictionaries(
    {
        "plan": st.sampled_from(["gold", "silver", None]),
        "orders_days_ago": st.lists(st.sampled_from([1, 5, 20, 40]), max_size=3),
        # product views: minutes before now and their category
        "views": st.lists(
            st.tuples(st.sampled_from([1, 5, 20, 29, 31, 45, 70, 200]), st.sampled_from(["shoes", "bags"])),
            max_size=5,
        ),
        "errors_seconds_ago": st.lists(st.sampled_from([5, 30, 50, 100]), max_size=3),
        "source": st.sampled_from(["newsletter", "ads", None]),
    }
)
contexts = st.fixed_dictionaries(
    {
        "cart": st.sampled_from([None, 30, 120]),
        "country": st.sampled_from(["DE", "JP", "US"]),
        "day": st.sampled_from(sorted(DAYS)),
    }
)
leaves = st.one_of(
    st.builds(lambda v: {"trait": "plan", "op": "eq", "value": v}, st.sampled_from(["gold", "silver"])),
    st.builds(
        lambda d, n: {"event": "Order Completed", "within_days": d, "count": {"op": "gte", "value": n}},
        st.sampled_from([7, 30]),
        st.integers(1, 2),
    ),
    st.just({"segment": "gold members"}),
    st.builds(
        lambda c, n: {
            "session_event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": c}],
            "count": {"op": "gte", "value": n},
        },
        st.sampled_from(["shoes", "bags"]),
        st.integers(1, 3),
    ),
    st.builds(lambda n: {"session": "events", "op": "gte", "value": n}, st.integers(1, 4)),
    st.builds(
        lambda s: {"session": "source", "op": "eq", "value": s}, st.sampled_from(["newsletter", "ads"])
    ),
    st.just({"session": "struggling", "op": "eq", "value": True}),
    st.builds(lambda v: {"context": "cart.value", "op": "gt", "value": v}, st.sampled_from([50, 100])),
    st.just({"context": "holiday", "op": "eq", "value": True}),
    st.builds(lambda c: {"context": "country", "op": "eq", "value": c}, st.sampled_from(["DE", "JP"])),
)
audiences = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=5,
)


def _session(moments: list[datetime], now: datetime) -> list[datetime]:
    """Plain statement: walk back from now while each step is at most 30 minutes."""
    kept, edge = [], now
    for moment in sorted((m for m in moments if m <= now), reverse=True):
        if edge - moment > GAP:
            break
        kept.append(moment)
        edge = moment
    return kept


def oracle(node: dict[str, Any], v: dict[str, Any], ctx: dict[str, Any], now: datetime) -> bool:
    if "and" in node:
        return all(oracle(c, v, ctx, now) for c in node["and"])
    if "or" in node:
        return any(oracle(c, v, ctx, now) for c in node["or"])
    if "not" in node:
        return not oracle(node["not"], v, ctx, now)
    views = [(now - timedelta(minutes=m), c) for m, c in v["views"]]
    errors = [now - timedelta(seconds=s) for s in v["errors_seconds_ago"]]
    orders = [now - timedelta(days=d) for d in v["orders_days_ago"]]
    # orders make sessions too; the identify (with the plan) does not (sessions.SESSION_TYPES)
    moments = [m for m, _ in views] + errors + orders
    session = _session(moments, now)
    if "trait" in node:
        return v["plan"] == node["value"]
    if "segment" in node:
        return v["plan"] == "gold"
    if "event" in node:
        return (
            sum(1 for o in orders if o >= now - timedelta(days=node["within_days"])) >= node["count"]["value"]
        )
    if "session_event" in node:
        wanted = node["where"][0]["value"]
        return sum(1 for m, c in views if c == wanted and m in session) >= node["count"]["value"]
    if node.get("session") == "events":
        return len(session) >= node["value"]
    if node.get("session") == "source":
        in_session = sorted(m for m, _ in views if m in session)
        if in_session and v["source"] is not None:
            return v["source"] == node["value"]
        return False
    if node.get("session") == "struggling":
        recent = [e for e in errors if now - e <= timedelta(seconds=60)]
        return len(recent) >= 2
    if node.get("context") == "cart.value":
        return ctx["cart"] is not None and ctx["cart"] > node["value"]
    if node.get("context") == "holiday":
        return now.date().isoformat().endswith("12-25") and ctx["country"] in HOLIDAY_COUNTRIES
    if node.get("context") == "country":
        return ctx["country"] == node["value"]
    raise AssertionError(node)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _messages(uid: str, v: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    views = [(now - timedelta(minutes=m), c) for m, c in v["views"]]
    errors = [now - timedelta(seconds=s) for s in v["errors_seconds_ago"]]
    orders = [now - timedelta(days=d) for d in v["orders_days_ago"]]
    first = min([*orders, *[m for m, _ in views], *errors], default=now)
    out: list[dict[str, Any]] = []
    if v["plan"] or orders:
        traits = {"plan": v["plan"]} if v["plan"] else {}
        out.append({"type": "identify", "userId": uid, "traits": traits, "timestamp": _iso(first)})
    for moment in orders:
        out.append({"type": "track", "userId": uid, "event": "Order Completed", "timestamp": _iso(moment)})
    campaign = {"campaign": {"source": v["source"]}} if v["source"] else {}
    for moment, category in views:
        out.append(
            {
                "type": "track",
                "userId": uid,
                "event": "Product Viewed",
                "properties": {"category": category},
                "context": campaign,
                "timestamp": _iso(moment),
            }
        )
    for moment in errors:
        out.append(
            {
                "type": "track",
                "userId": uid,
                "event": "Form Field Errored",
                "timestamp": _iso(moment),
                "properties": {"form_id": "signup", "field": "email", "message": "invalid"},
            }
        )
    for n, message in enumerate(out):
        message["messageId"] = f"{uid}-{n}"
    return out


@pytest.fixture
def world(system: OpenCDP) -> OpenCDP:
    segment_store.save(system.engine, "gold members", {"trait": "plan", "op": "eq", "value": "gold"})
    return system


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(visitors=st.lists(visitor_data, min_size=1, max_size=4), context=contexts, audience=audiences)
def test_decisions_agree_with_the_oracle(
    world: OpenCDP, visitors: list[dict[str, Any]], context: dict[str, Any], audience: dict[str, Any]
) -> None:
    system = world
    now = DAYS[context["day"]]
    example = next(_visitors)
    with system.engine.begin() as conn:
        source_id = system_source_id(conn, "test-property")
        conn.execute(experiences.delete())
        conn.execute(
            experiences.insert().values(
                name="x",
                placement="hero",
                enabled=True,
                version=1,
                created_at=now,
                updated_at=now,
                definition={
                    "name": "x",
                    "placement": "hero",
                    "holdout_percent": 0,
                    "variants": [{"name": "v", "audience": audience, "content": {"t": 1}}],
                },
            )
        )
    uids = [f"e{example}-u{i}" for i in range(len(visitors))]
    rows = [
        normalise(m, Envelope(now), source_id, system.limits)
        for uid, v in zip(uids, visitors, strict=True)
        for m in _messages(uid, v, now)
    ]
    if rows:
        system.appender.append_committed(system.engine, rows)
    system.processor.run_until_caught_up()
    decider = Decider(system.engine, system.settings)
    request_context: dict[str, Any] = {"locale": f"en-{context['country']}"}
    if context["cart"] is not None:
        request_context["cart"] = {"value": context["cart"]}
    for uid, v in zip(uids, visitors, strict=True):
        request = parse_decide_request({"userId": uid, "placements": ["hero"], "context": request_context})
        got = decider.decide(request, now=now).as_json()["decisions"]["hero"]["variant"] == "v"
        expected = oracle(audience, v, context, now)
        assert got == expected, (audience, v, context)
