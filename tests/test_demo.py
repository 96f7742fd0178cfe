"""The demo shop: relative to its `now`, reproducible, unclamped, with consent as a site records it
and the planted situations; `opencdp demo --now`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from opencdp.demo.shop import TASK_SEGMENT, DemoEvent, ShopGenerator, parse_now
from opencdp.demo.situations import CONSENT_EVENT
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop() -> list[DemoEvent]:
    return list(ShopGenerator(now=NOW).events())  # the quickstart's shop: 2,000 customers, seed 42


def _tracks(shop: list[DemoEvent], name: str) -> list[DemoEvent]:
    return [e for e in shop if e.message.get("event") == name]


def _dump(events: list[DemoEvent]) -> list[str]:
    return [json.dumps([e.source, e.message, e.at.isoformat()], sort_keys=True) for e in events]


def test_same_seed_and_now_give_the_same_events_and_message_ids_follow_the_seed() -> None:
    first = list(ShopGenerator(customers=150, seed=3, now=NOW).events())
    assert _dump(first) == _dump(list(ShopGenerator(customers=150, seed=3, now=NOW).events()))
    other_seed = list(ShopGenerator(customers=150, seed=4, now=NOW).events())
    assert {e.message["messageId"] for e in first}.isdisjoint(e.message["messageId"] for e in other_seed)
    later = list(ShopGenerator(customers=150, seed=3, now=NOW + timedelta(days=40)).events())
    # the same story forty days later: same ids (re-sending adds nothing), every moment shifted
    assert [e.message["messageId"] for e in later] == [e.message["messageId"] for e in first]
    assert all(b.at - a.at == timedelta(days=40) for a, b in zip(first, later, strict=True))


def test_the_default_now_is_the_current_time() -> None:
    before = datetime.now(UTC)
    generator = ShopGenerator(customers=30, seed=5)
    events = list(generator.events())
    assert before <= generator.now <= datetime.now(UTC)
    assert max(e.at for e in events) > before - timedelta(days=3)  # activity up to today


def test_nothing_happens_after_now_and_the_history_reaches_up_to_it(shop: list[DemoEvent]) -> None:
    assert all(e.at <= NOW for e in shop)
    assert all(datetime.fromisoformat(e.message["timestamp"]) == e.at for e in shop)
    assert min(e.at for e in shop) >= NOW - timedelta(days=90)
    days = Counter((NOW - e.at).days for e in _tracks(shop, "Order Completed"))
    assert all(days[d] > 0 for d in range(60))  # orders on every one of the last 60 days
    assert max(days.values()) < 4 * (sum(days[d] for d in range(30)) / 30)  # no spike on any day


def test_orders_are_not_clamped_onto_one_instant(shop: list[DemoEvent]) -> None:
    orders = _tracks(shop, "Order Completed")
    per_customer: dict[str, list[datetime]] = defaultdict(list)
    for order in orders:
        per_customer[order.message["userId"]].append(order.at)
    for moments in per_customer.values():
        moments.sort()
        assert all(b - a >= timedelta(hours=1) for a, b in pairwise(moments))
    assert max(Counter(o.at for o in orders).values()) <= 2  # no instant collects many orders
    assert len({o.message["properties"]["order_id"] for o in orders}) == len(orders)


def test_many_recent_repeat_buyers_in_germany(shop: list[DemoEvent]) -> None:
    country = {
        e.message["userId"]: e.message["traits"]["country"]
        for e in shop
        if e.message["type"] == "identify" and "country" in e.message["traits"]
    }
    month = NOW - timedelta(days=30)
    recent = Counter(o.message["userId"] for o in _tracks(shop, "Order Completed") if o.at >= month)
    task = [user for user, n in recent.items() if n >= 2 and country.get(user) == "DE"]
    assert 30 <= len(task) <= 250


def _consent_of(shop: list[DemoEvent]) -> dict[str, list[dict[str, bool]]]:
    """Per anonymous id, the consent choices its events carry, in time order."""
    found: dict[str, list[dict[str, bool]]] = defaultdict(list)
    for e in sorted(shop, key=lambda e: e.at):
        consent = (e.message.get("context") or {}).get("consent")
        if consent:
            found[e.message["anonymousId"]].append(consent["categoryPreferences"])
    return found


def test_most_customers_answer_the_consent_banner_some_decline_some_withdraw(shop: list[DemoEvent]) -> None:
    from opencdp.privacy.consent import DEFAULT_PURPOSES, extract_consent

    signups = [e for e in shop if e.message["type"] == "identify" and "first_name" in e.message["traits"]]
    customers = {e.message["userId"]: e for e in signups}
    with_consent = [e for e in customers.values() if "consent" in e.message.get("context", {})]
    assert len(with_consent) >= 0.8 * len(customers)
    understood = [extract_consent(e.message) for e in with_consent]
    assert all({c.purpose for c in changes} == set(DEFAULT_PURPOSES) for changes in understood)
    email = [any(c.purpose == "email_marketing" and c.granted for c in changes) for changes in understood]
    assert 0.6 * len(customers) <= sum(email) < 0.95 * len(customers)
    assert sum(not any(c.granted for c in changes) for changes in understood) >= 0.03 * len(customers)
    withdrawals = [
        e
        for e in _tracks(shop, CONSENT_EVENT)
        if "userId" in e.message
        and not e.message["context"]["consent"]["categoryPreferences"]["Email Marketing"]
    ]
    assert 0.01 * len(customers) <= len(withdrawals) <= 0.1 * len(customers)
    withdrawn = {e.message["userId"]: e.at for e in withdrawals}
    for mail in _tracks(shop, "Email Delivered"):  # campaigns stop at the withdrawal
        assert mail.at < withdrawn.get(mail.message["userId"], NOW)


def test_anonymous_only_visitors_browse_and_never_identify(shop: list[DemoEvent]) -> None:
    devices_of_users = {e.message.get("anonymousId") for e in shop if "userId" in e.message}
    anonymous = {e.message["anonymousId"] for e in shop if "anonymousId" in e.message} - devices_of_users
    assert len(anonymous) >= 100
    kinds = {
        e.message.get("event") or e.message["type"] for e in shop if e.message.get("anonymousId") in anonymous
    }
    assert {"page", "Product Viewed"} <= kinds and "identify" not in kinds and "Order Completed" not in kinds


def test_planted_category_interest_and_email_ignorers(shop: list[DemoEvent]) -> None:
    buyers = {o.message["userId"] for o in _tracks(shop, "Order Completed")}
    owner = {
        e.message["anonymousId"]: e.message["userId"]
        for e in shop
        if e.message["type"] == "identify" and "anonymousId" in e.message
    }
    views: dict[str, Counter[str]] = defaultdict(Counter)
    for e in _tracks(shop, "Product Viewed"):
        user = owner.get(e.message["anonymousId"])
        if user and e.at >= NOW - timedelta(days=21):
            views[user][e.message["properties"]["category"]] += 1
    interested = [u for u, seen in views.items() if u not in buyers and max(seen.values()) >= 6]
    assert len(interested) >= 40
    delivered = Counter(e.message["userId"] for e in _tracks(shop, "Email Delivered"))
    opened = {e.message["userId"] for e in _tracks(shop, "Email Opened")}
    assert len([u for u, n in delivered.items() if n >= 10 and u not in opened]) >= 40


def test_planted_checkout_form_trouble_on_the_postcode(shop: list[DemoEvent]) -> None:
    errors = Counter(e.message["properties"]["field"] for e in _tracks(shop, "Form Field Errored"))
    assert errors.most_common(1)[0][0] == "postcode" and errors["postcode"] > 0.55 * errors.total()
    assert len(errors) >= 3  # other fields fail too, far less often
    abandoned = _tracks(shop, "Form Abandoned")
    assert len(abandoned) >= 50
    assert all(e.message["properties"]["form_id"] == "checkout" for e in abandoned)
    assert Counter(e.message["properties"]["field"] for e in abandoned).most_common(1)[0][0] == "postcode"


def test_planted_shares_bring_visitors_and_orders_of_others(shop: list[DemoEvent]) -> None:
    shares = {e.message["properties"]["share_id"]: e for e in _tracks(shop, "Product Shared")}
    assert len(shares) >= 30
    attributed = [o for o in _tracks(shop, "Order Completed") if "share_id" in o.message["properties"]]
    assert len(attributed) >= 30
    for order in attributed:
        share = shares[order.message["properties"]["share_id"]]
        assert order.message["userId"] != share.message["userId"] and order.at > share.at
        assert order.message["context"]["campaign"]["content"] == share.message["properties"]["share_id"]
    landings = [e for e in shop if e.message["type"] == "page" and "campaign" in e.message.get("context", {})]
    assert {p.message["context"]["campaign"]["content"] for p in landings} <= set(shares)
    assert len(landings) > len(attributed)  # not every visitor through a share orders
    sharers = Counter(shares[o.message["properties"]["share_id"]].message["userId"] for o in attributed)
    assert len(sharers) >= 10


def test_the_task_segment_exported_for_email_marketing_holds_most_members(cdp: OpenCDP) -> None:
    """The evaluator's task end to end on the processed shop: members, and a consented export."""
    from opencdp.demo.runner import demo_summary
    from opencdp.segments.queries import export_csv
    from opencdp.segments.store import save

    log_messages(cdp.engine, [e.message for e in ShopGenerator(customers=700, seed=42).events()])
    process(cdp.engine)
    members = save(cdp.engine, "DE repeat buyers", TASK_SEGMENT)
    summary = demo_summary(cdp.engine)
    assert summary["task_members"] >= 15
    exported = list(export_csv(cdp.engine, members.name, ["country"], [], "email_marketing"))[1:]
    assert 0.5 * summary["task_members"] <= len(exported) < summary["task_members"]
    assert len(exported) == summary["task_email_consent"]
    assert all(line.rstrip().endswith(",DE") for line in exported)
    assert 0.8 * summary["identified"] <= summary["consent_recorded"] < summary["identified"]
    assert 0.6 * summary["identified"] <= summary["email_consent"] < 0.95 * summary["identified"]
    assert 0.03 * summary["identified"] <= summary["declined"] < 0.2 * summary["identified"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T09:30:00Z", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
        ("2026-11-01T10:30:00+01:00", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
        ("2026-11-01 09:30", datetime(2026, 11, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_now_accepts_iso_dates_and_times(text: str, expected: datetime) -> None:
    assert parse_now(text, current=NOW) == expected


@pytest.mark.parametrize(("text", "problem"), [("yesterday", "not an ISO date"), ("2026-11-02", "future")])
def test_now_refuses_what_is_no_date_or_in_the_future(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_now(text, current=NOW)


def _cli(env: dict[str, str], *args: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "opencdp", "demo", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_command_with_now(cdp: OpenCDP, env_for: dict[str, str]) -> None:
    cdp.stop()
    done = _cli(env_for, "--customers", "25", "--seed", "9", "--now", "2026-10-15T12:00:00Z")
    assert done.returncode == 0, done.stderr
    assert "(2026-07-17 to 2026-10-15 12:00 UTC)" in done.stdout
    assert "answered the consent banner" in done.stdout and "planted:" in done.stdout
    assert "planted experiment 'demo home banner'" in done.stdout
    bad = _cli(env_for, "--now", "15.10.2026")
    assert bad.returncode == 2 and "Invalid value for --now" in bad.stderr and "not an ISO date" in bad.stderr
    future = _cli(env_for, "--now", (datetime.now(UTC) + timedelta(days=2)).date().isoformat())
    assert future.returncode == 2 and "is in the future" in future.stderr
