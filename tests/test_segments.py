"""Segments: the SQL compiler agrees with the plain-Python oracle on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencdp.segments.calendar import CALENDAR_OPS
from opencdp.segments.compiler import SegmentReferenceError, members_query
from opencdp.segments.language import CriteriaError, ValueOp, parse_criteria
from opencdp.segments.oracle import OracleEvent, OracleProfile, evaluate
from opencdp.system import OpenCDP
from tests.segment_helpers import NOW, assert_selects, load, profile

WORLD = {
    "p1": profile(
        {"country": "DE", "age": 34, "vip": True, "city": "Köln"},
        {"order_count": 3},
        [
            ("Order Completed", 3, {"category": "shoes", "revenue": 80}),
            ("Order Completed", 10, {"category": "shoes", "revenue": 20}),
            ("Email Opened", 2, {}),
        ],
        {"churn_probability": 0.81, "advocate": True},
    ),
    "p2": profile(
        {"country": "de", "age": "34"},
        {"order_count": 1},
        [("Order Completed", 40, {"category": "shoes", "revenue": 50})],
        {"churn_probability": 0.2, "advocate": False},
    ),
    "p3": profile(
        {"country": "FR", "age": 61},
        {},
        [("Order Completed", 100, {"category": "kids"}), ("Email Opened", 1, {})],
    ),
    "p4": profile({}, {}, []),
}

CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"trait": "country", "op": "eq", "value": "DE"}, {"p1"}),  # case-sensitive
    ({"trait": "country", "op": "neq", "value": "DE"}, {"p2", "p3", "p4"}),  # missing counts as "not DE"
    ({"trait": "age", "op": "gte", "value": 34}, {"p1", "p3"}),  # "34" (text) is not a number
    ({"trait": "age", "op": "eq", "value": "34"}, {"p2"}),
    ({"trait": "vip", "op": "eq", "value": True}, {"p1"}),
    ({"trait": "city", "op": "contains", "value": "öl"}, {"p1"}),
    ({"trait": "city", "op": "starts_with", "value": "kö"}, set()),
    ({"trait": "country", "op": "in", "value": ["DE", "FR"]}, {"p1", "p3"}),
    ({"trait": "country", "op": "not_in", "value": ["DE", "FR"]}, {"p2", "p4"}),
    ({"trait": "age", "op": "exists"}, {"p1", "p2", "p3"}),
    ({"trait": "age", "op": "not_exists"}, {"p4"}),
    ({"computed": "order_count", "op": "gt", "value": 1}, {"p1"}),
    ({"predicted": "churn_probability", "op": "gte", "value": 0.5}, {"p1"}),
    ({"predicted": "advocate", "op": "eq", "value": True}, {"p1"}),
    ({"predicted": "churn_probability", "op": "not_exists"}, {"p3", "p4"}),
    (
        {
            "event": "Order Completed",
            "where": [{"property": "category", "op": "eq", "value": "shoes"}],
            "within_days": 30,
            "count": {"op": "gte", "value": 2},
        },
        {"p1"},
    ),
    ({"event": "Order Completed", "within_days": 30}, {"p1"}),
    ({"event": "Order Completed", "count": {"op": "eq", "value": 0}}, {"p4"}),
    ({"event": "Order Completed", "within_days": 30, "count": {"op": "lte", "value": 1}}, {"p2", "p3", "p4"}),
    ({"event": "Order Completed", "count": {"op": "eq", "value": 2}}, {"p1"}),
    ({"event": "Order Completed", "last_occurred": {"op": "before_days", "value": 30}}, {"p2", "p3"}),
    ({"event": "Order Completed", "first_occurred": {"op": "within_days", "value": 60}}, {"p1", "p2"}),
    ({"event": "Order Completed", "where": [{"property": "revenue", "op": "gt", "value": 30}]}, {"p1", "p2"}),
    (
        {"and": [{"event": "Email Opened", "within_days": 7}, {"not": {"trait": "country", "value": "FR"}}]},
        {"p1"},
    ),
    (
        {
            "or": [
                {"trait": "country", "value": "FR"},
                {
                    "and": [
                        {"trait": "vip", "value": True},
                        {"not": {"trait": "age", "op": "lt", "value": 18}},
                    ]
                },
            ]
        },
        {"p1", "p3"},
    ),
]


@pytest.mark.parametrize(("criteria", "expected"), CASES)
def test_criteria_select_the_same_members_on_every_engine(
    cdp: OpenCDP, criteria: dict[str, Any], expected: set[str]
) -> None:
    assert_selects(cdp.engine, WORLD, criteria, expected)


def test_values_are_bound_parameters_never_sql(cdp: OpenCDP) -> None:
    nasty = "x' OR '1'='1"
    load(cdp.engine, {"a": profile({"name": nasty}), "b": profile({"name": "y"})})
    query = members_query(parse_criteria({"trait": "name", "value": nasty}), NOW)
    assert nasty not in str(query.compile(cdp.engine))
    with cdp.engine.connect() as conn:
        assert {r[0] for r in conn.execute(query)} == {"a"}


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (
            {"and": [{"trait": "a", "value": 1}, {"event": "E", "count": {"op": "gte", "value": -2}}]},
            "and.1.count.value",
        ),
        ({"or": [{"not": {"trait": "a", "op": "gt", "value": "x"}}]}, "or.0.not.value"),
        ({"and": [{"trait": "a", "op": "like", "value": 1}]}, "and.0.op"),
        ({"and": []}, "and"),
        ({"trait": "a", "value": 1, "extra": True}, "extra"),
        ({"event": "E", "within_days": 0}, "within_days"),
        ({"event": "E", "where": [{"property": "p", "op": "in", "value": []}]}, "where.0.value"),
        ([1, 2], ""),
        ({"nothing": 1}, ""),
    ],
)
def test_validation_names_the_path(document: Any, path: str) -> None:
    with pytest.raises(CriteriaError) as caught:
        parse_criteria(document)
    assert path in [p["path"] for p in caught.value.problems]


def test_segment_references_resolve_and_cycles_are_refused(cdp: OpenCDP) -> None:
    load(cdp.engine, WORLD)
    saved = {
        "germans": {"trait": "country", "value": "DE"},
        "loop_a": {"segment": "loop_b"},
        "loop_b": {"segment": "loop_a"},
    }
    query = members_query(
        parse_criteria({"and": [{"segment": "germans"}, {"trait": "vip", "value": True}]}), NOW, saved.get
    )
    with cdp.engine.connect() as conn:
        assert {r[0] for r in conn.execute(query)} == {"p1"}
    with pytest.raises(SegmentReferenceError, match="refers to itself"):
        members_query(parse_criteria({"segment": "loop_a"}), NOW, saved.get)
    with pytest.raises(SegmentReferenceError, match="no segment named"):
        members_query(parse_criteria({"segment": "nope"}), NOW, saved.get)


# --- property test: SQL == Python on random worlds and random criteria -------------------------

KEYS = ["country", "age", "vip"]
SCALARS = (
    st.sampled_from(["DE", "de", "FR", "", "34", "Köln"])
    | st.sampled_from([0, 1, 34, 2.5, -1])
    | st.booleans()
)
NUMBERS = st.sampled_from([0, 1, 2.5, 34, 100])
TEXTS = st.sampled_from(["D", "E", "Kö", "de", "3"])


@st.composite
def value_tests(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from([op for op in get_args(ValueOp) if op not in CALENDAR_OPS]))
    if op in ("exists", "not_exists"):
        return {"op": op}
    if op in ("gt", "gte", "lt", "lte"):
        return {"op": op, "value": draw(NUMBERS)}
    if op in ("contains", "starts_with"):
        return {"op": op, "value": draw(TEXTS)}
    if op in ("in", "not_in"):
        pool = draw(st.sampled_from([["DE", "FR", "34"], [0, 34, 2.5]]))
        return {"op": op, "value": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))}
    return {"op": op, "value": draw(SCALARS)}


# Calendar days around the events of `worlds` (NOW is 2026-06-01 12:00 UTC; events lie 0-90 days,
# and 0, 3, 12 or 14 hours, before it: midnight in UTC and in Berlin); zones east and west of UTC.
DAYS = ["2026-03-02", "2026-03-03", "2026-05-02", "2026-05-03", "2026-05-25", "2026-05-31", "2026-06-01"]
ZONES: list[str | None] = [
    None,
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
]
DATE_TEXTS = st.sampled_from(
    [
        "2026-05-31",
        "2026-06-01",
        "2026-05-31T22:00:00Z",
        "2026-05-31T21:59:59.5Z",
        "2026-06-01T00:00:00+02:00",
        "x",
    ]
)


@st.composite
def calendar_tests(
    draw: st.DrawFn, days: list[str] = DAYS, zones: list[str | None] = ZONES
) -> dict[str, Any]:
    """One calendar op as {"op", "value"} (value and computed conditions, first/last_occurred)."""
    op = draw(
        st.sampled_from(["on", "after", "on_or_after", "before", "on_or_before", "between", "in_month"])
    )
    if op == "between":
        value: Any = sorted(draw(st.lists(st.sampled_from(days), min_size=2, max_size=2)))
    else:
        value = draw(st.sampled_from(sorted({d[:7] for d in days}) if op == "in_month" else days))
    test = {"op": op, "value": value}
    zone = draw(st.sampled_from(zones))
    return test if zone is None else {**test, "tz": zone}


@st.composite
def event_calendars(
    draw: st.DrawFn, days: list[str] = DAYS, zones: list[str | None] = ZONES
) -> dict[str, Any]:
    """Calendar keys of an event condition: one standing alone, or a lower and/or upper bound."""
    zone = draw(st.sampled_from(zones))
    shape = draw(st.sampled_from(["alone", "lower", "upper", "range"]))
    if shape == "alone":
        test = draw(calendar_tests(days, zones).filter(lambda t: t["op"] in ("on", "between", "in_month")))
        out = {test["op"]: test["value"]}
    else:
        out = {}
        if shape in ("lower", "range"):
            out[draw(st.sampled_from(["after", "on_or_after"]))] = draw(st.sampled_from(days))
        if shape in ("upper", "range"):
            out[draw(st.sampled_from(["before", "on_or_before"]))] = draw(st.sampled_from(days))
        if shape == "range":  # an empty range is refused; keep only the lower bound then
            first = {
                k: date.fromisoformat(v) + timedelta(days=k in ("after", "on_or_before"))
                for k, v in out.items()
            }
            lower = first.get("after") or first.get("on_or_after")
            upper = first.get("before") or first.get("on_or_before")
            if lower is not None and upper is not None and lower >= upper:
                out = {k: v for k, v in out.items() if k in ("after", "on_or_after")}
    return out if zone is None else {**out, "tz": zone}


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["trait", "computed", "predicted", "event", "date"]))
    if kind == "trait":
        return {"trait": draw(st.sampled_from(KEYS)), **draw(value_tests())}
    if kind == "date":
        return {draw(st.sampled_from(["trait", "computed"])): "signup", **draw(calendar_tests())}
    if kind == "computed":
        return {"computed": draw(st.sampled_from(["order_count", "segment"])), **draw(value_tests())}
    if kind == "predicted":
        return {"predicted": draw(st.sampled_from(["churn_probability", "segment"])), **draw(value_tests())}
    cond: dict[str, Any] = {"event": draw(st.sampled_from(["Order Completed", "Email Opened"]))}
    if draw(st.booleans()):
        cond["where"] = [{"property": draw(st.sampled_from(["category", "revenue"])), **draw(value_tests())}]
    measure = draw(st.sampled_from(["count", "first", "last", "none"]))
    if measure == "count":
        cond["count"] = {
            "op": draw(st.sampled_from(["gte", "gt", "eq", "lte", "lt"])),
            "value": draw(st.integers(0, 3)),
        }
    window = draw(st.sampled_from(["none", "relative", "calendar"]))
    if measure in ("count", "none") and window == "relative":
        cond["within_days"] = draw(st.sampled_from([1, 7, 30]))
    if measure in ("count", "none") and window == "calendar":
        cond.update(draw(event_calendars()))
    if measure in ("first", "last"):
        cond[f"{measure}_occurred"] = (
            draw(calendar_tests())
            if window == "calendar"
            else {
                "op": draw(st.sampled_from(["within_days", "before_days"])),
                "value": draw(st.sampled_from([0, 7, 30])),
            }
        )
    return cond


criteria_documents = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"and": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"or": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, OracleProfile]:
    out = {}
    for n in range(draw(st.integers(0, 6))):
        traits = {k: draw(SCALARS) for k in KEYS if draw(st.booleans())}
        computed = {k: draw(SCALARS) for k in ("order_count", "segment") if draw(st.booleans())}
        predicted = {k: draw(SCALARS) for k in ("churn_probability", "segment") if draw(st.booleans())}
        for values in (traits, computed):
            if draw(st.booleans()):
                values["signup"] = draw(DATE_TEXTS | SCALARS)
        events = [
            OracleEvent(
                draw(st.sampled_from(["Order Completed", "Email Opened"])),
                "track",
                NOW
                - timedelta(
                    days=draw(st.sampled_from([0, 1, 6, 7, 8, 29, 30, 31, 90])),
                    hours=draw(st.sampled_from([0, 0, 3, 12, 14])),
                ),
                {k: draw(SCALARS) for k in ("category", "revenue") if draw(st.booleans())},
            )
            for _ in range(draw(st.integers(0, 4)))
        ]
        out[f"p{n}"] = OracleProfile(traits, computed, events, predicted)
    return out


@pytest.mark.slow
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds(), documents=st.lists(criteria_documents, min_size=1, max_size=4))
def test_sql_agrees_with_python_on_random_data(
    cdp: OpenCDP, world: dict[str, OracleProfile], documents: list[dict[str, Any]]
) -> None:
    load(cdp.engine, world)
    with cdp.engine.connect() as conn:
        for document in documents:
            parsed = parse_criteria(document)
            expected = {pid for pid, p in world.items() if evaluate(parsed, p, NOW)}
            got = {r[0] for r in conn.execute(members_query(parsed, NOW))}
            assert got == expected, document


# Few days and zones, so that events fall on the first and last instants of the windows: the last
# days of March and May (Berlin moves its clocks on 29 March), UTC, east and west of it.
EDGE_DAYS = ["2026-03-29", "2026-03-30", "2026-05-31", "2026-06-01"]
EDGE_ZONES: list[str | None] = [None, "Europe/Berlin", "America/New_York", "Asia/Kolkata"]


@st.composite
def midnight_worlds(draw: st.DrawFn, zone: str | None) -> dict[str, OracleProfile]:
    """Events at midnight of the EDGE_DAYS in `zone`, or a microsecond either side."""
    out = {}
    for n in range(draw(st.integers(1, 5))):
        events = []
        for _ in range(draw(st.integers(1, 4))):
            day = date.fromisoformat(draw(st.sampled_from(EDGE_DAYS)))
            midnight = datetime.combine(day, time(0), tzinfo=ZoneInfo(zone or "UTC")).astimezone(UTC)
            moment = midnight + timedelta(microseconds=draw(st.sampled_from([-1, 0, 0, 0, 1])))
            events.append(OracleEvent("Order Completed", "track", moment, {}))
        dated = {"signup": draw(DATE_TEXTS)} if draw(st.booleans()) else {}
        out[f"p{n}"] = OracleProfile(dated, dated, events)
    return out


@st.composite
def calendar_leaves(draw: st.DrawFn, zone: str | None) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return {draw(st.sampled_from(["trait", "computed"])): "signup", **draw(calendar_tests())}
    cond: dict[str, Any] = {"event": "Order Completed"}
    measure = draw(st.sampled_from(["count", "first_occurred", "last_occurred"]))
    if measure == "count":
        cond.update(draw(event_calendars(EDGE_DAYS, [zone])))
        cond["count"] = {"op": draw(st.sampled_from(["gte", "eq", "lte"])), "value": draw(st.integers(0, 2))}
    else:
        cond[measure] = draw(calendar_tests(EDGE_DAYS, [zone]))
    return cond


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), zone=st.sampled_from(EDGE_ZONES))
def test_calendar_days_agree_at_midnight_in_every_zone(
    cdp: OpenCDP, data: st.DataObject, zone: str | None
) -> None:
    """Where calendar windows begin and end (the test above seldom lands there): events at the
    midnights of the zone the conditions are in."""
    world = data.draw(midnight_worlds(zone))
    documents = data.draw(st.lists(calendar_leaves(zone), min_size=1, max_size=6))
    test_sql_agrees_with_python_on_random_data.hypothesis.inner_test(cdp, world, documents)  # type: ignore[attr-defined]


def test_merged_profiles_are_never_members(cdp: OpenCDP) -> None:
    load(cdp.engine, {"live": profile({"a": 1}), "gone": profile({"a": 1})})
    from opencdp.store.schema import profiles

    with cdp.engine.begin() as conn:
        conn.execute(profiles.update().where(profiles.c.id == "gone").values(merged_into="live"))
        assert {
            r[0] for r in conn.execute(members_query(parse_criteria({"trait": "a", "value": 1}), NOW))
        } == {"live"}
    assert sa is not None
