"""The dashboard in a real browser (headless Chromium via Playwright) against a real server on
127.0.0.1: sign in, find a customer, the 360° view, a nested segment with a live count, save it and
download its CSV, and script injected through trait values and event names shown as text."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from opencdp.segments import queries
from opencdp.store.schema import identities, profile_events, profiles, segment_memberships, segments
from opencdp.ui.web import NO_VALUE
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in
from tests.ui.demo_data import XSS_EMAIL, XSS_EVENT, XSS_NAME, XSS_TRAIT

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("browser"),  # one dashboard server and one Chromium for the module
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


def _customer(dashboard: Dashboard) -> tuple[str, str, int]:
    """A signed-up customer who ordered, answered the consent banner and has devices merged in,
    with more events than one timeline page: (e-mail, profile id, events)."""
    with dashboard.engine.connect() as conn:
        buyers = sa.select(profile_events.c.profile_id).where(profile_events.c.name == "Order Completed")
        survivors = sa.select(profiles.c.merged_into).where(profiles.c.merged_into.is_not(None))
        rows = conn.execute(
            sa.select(identities.c.value, profiles.c.id, profiles.c.event_counts, profiles.c.consent)
            .join(profiles, profiles.c.id == identities.c.profile_id)
            .where(
                identities.c.type == "email",
                profiles.c.merged_into.is_(None),
                profiles.c.id.in_(buyers),
                profiles.c.id.in_(survivors),
            )
        ).all()
    best = max((r for r in rows if r.consent), key=lambda r: sum(r.event_counts.values()))
    return best.value, best.id, sum(best.event_counts.values())


def test_sign_in_find_a_customer_and_open_the_360_view(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/profiles")
    expect(page).to_have_url(dashboard.url + "/login?next=%2Fprofiles")
    sign_in(page, dashboard.url)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".chart-svg").first).to_be_visible()

    email, profile_id, events = _customer(dashboard)
    page.get_by_placeholder("Find a customer…").fill(email.upper())
    page.keyboard.press("Enter")  # the one customer with this e-mail: straight to the profile
    expect(page).to_have_url(f"{dashboard.url}/profiles/{profile_id}")
    expect(page.locator("#identifiers")).to_contain_text(email)
    money_or_none = re.compile("^(€[\\d,]+\\.\\d\\d|\u2013)$")
    expect(page.locator("#headline [data-fact=value]")).to_have_text(money_or_none)
    expect(page.locator("#traits")).to_contain_text("First name")
    expect(page.locator("#computed")).to_contain_text("RFM segment")
    expect(page.locator("#consent [data-purpose=email_marketing]")).to_be_visible()
    expect(page.locator("#consent [data-purpose]")).to_have_count(5)  # every defined purpose
    expect(page.locator("#channels [data-channel=web]")).to_be_visible()
    expect(page.locator("#merges")).to_contain_text("arrived together in one event")
    assert events > 25
    expect(page.locator("#timeline .event")).to_have_count(25)
    page.get_by_role("link", name="Older events →").click()
    expect(page).to_have_url(re.compile(rf"/profiles/{profile_id}\?before=\d+#timeline$"))
    expect(page.locator("#timeline .event")).to_have_count(min(25, events - 25))
    page.get_by_role("link", name="By arrival").click()
    expect(page).to_have_url(f"{dashboard.url}/profiles/{profile_id}?order=arrival#timeline")
    page.get_by_role("link", name="Older events →").click()
    expect(page).to_have_url(re.compile(rf"/profiles/{profile_id}\?before=\d+&order=arrival#timeline$"))
    expect(page.locator("#timeline .event")).to_have_count(min(25, events - 25))
    page.goto(dashboard.url + "/profiles?seen=30&sort=value")
    expect(page.locator("#list-count")).to_contain_text(" of ")
    expect(page.locator("#results tbody tr").first.get_by_role("link")).to_be_visible()


def _count(dashboard: Dashboard, criteria: dict[str, Any]) -> str:
    return f"{queries.preview(dashboard.engine, criteria, 0)['count']:,}"


def test_build_a_nested_segment_save_it_and_download_its_csv(
    page: Any, dashboard: Dashboard, tmp_path: Path
) -> None:
    sign_in(page, dashboard.url)
    page.get_by_role("link", name="Segments", exact=True).click()
    page.get_by_role("link", name="New segment").click()
    page.locator("#segment-name").fill("Engaged Germans")
    live = page.locator("#live-count")
    expect(live).to_have_text(NO_VALUE)

    root = page.locator("#builder > .group")
    root.locator(":scope > .adders").get_by_role("button", name="+ Trait").click()
    trait = root.locator(":scope > .group-body > .cond").first
    trait.get_by_label("Trait name").select_option("country")
    trait.get_by_label("Value", exact=True).fill("DE")
    germans = {"and": [{"trait": "country", "op": "eq", "value": "DE"}]}
    expect(live).to_have_text(_count(dashboard, germans))

    root.locator(":scope > .adders").get_by_role("button", name="+ Group").click()
    group = root.locator(":scope > .group-body > .group")
    group.locator(":scope > .adders").get_by_role("button", name="+ Event").click()
    group.locator(".cond.event").get_by_label("Event", exact=True).select_option(label="Order Completed")
    buyers = {"and": [germans["and"][0], {"or": [{"event": "Order Completed"}]}]}
    expect(live).to_have_text(_count(dashboard, buyers))

    group.locator(":scope > .adders").get_by_role("button", name="+ Computed trait").click()
    computed = group.locator(":scope > .group-body > .cond").nth(1)
    computed.get_by_label("Computed name").select_option("email_opens_30_days")
    computed.get_by_label("Operator").select_option("gte")
    computed.get_by_label("Value", exact=True).fill("1")
    nested = {
        "and": [
            germans["and"][0],
            {
                "or": [
                    {"event": "Order Completed"},
                    {"computed": "email_opens_30_days", "op": "gte", "value": 1},
                ]
            },
        ]
    }
    expect(live).to_have_text(_count(dashboard, nested))
    expect(page.locator("#live-sample li").first).to_be_visible()

    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_have_text("Segment saved.")
    with dashboard.engine.connect() as conn:
        saved = conn.execute(sa.select(segments).where(segments.c.name == "Engaged Germans")).one()
    assert saved.criteria == nested
    assert page.url.startswith(f"{dashboard.url}/segments/{saved.id}")
    expect(live).to_have_text(_count(dashboard, nested))  # the saved segment reopens as built

    page.locator("#export-purpose").select_option("email_marketing")
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    target = tmp_path / "members.csv"
    download.value.save_as(target)
    assert download.value.suggested_filename == "Engaged_Germans.csv"
    with target.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header[:5] == ["profile_id", "entered_at", "user_id", "email", "phone"]
    assert "country" in header and "computed.total_revenue" in header
    with dashboard.engine.connect() as conn:
        members = {
            r.id
            for r in conn.execute(
                sa.select(profiles.c.id, profiles.c.consent)
                .join(segment_memberships, segment_memberships.c.profile_id == profiles.c.id)
                .where(
                    segment_memberships.c.segment_id == saved.id, segment_memberships.c.exited_at.is_(None)
                )
            )
            if (r.consent or {}).get("email_marketing") is True
        }
        # an e-mail export needs an address to write to
        members &= set(
            conn.execute(sa.select(identities.c.profile_id).where(identities.c.type == "email")).scalars()
        )
    assert {row[0] for row in rows} == members and members


def test_script_in_trait_values_and_event_names_is_shown_as_text(page: Any, dashboard: Dashboard) -> None:
    sign_in(page, dashboard.url)
    page.goto(dashboard.url + "/profiles?q=allory")  # part of the user id: a list
    link = page.locator("#results tbody tr").get_by_role("link")
    expect(link).to_have_text(XSS_NAME)
    link.click()
    expect(page.locator("#profile-name")).to_have_text(XSS_NAME)
    expect(page.locator("#identifiers")).to_contain_text(XSS_EMAIL)
    expect(page.locator("#traits")).to_contain_text(XSS_TRAIT)
    expect(page.locator("#timeline .event-name").first).to_have_text(XSS_EVENT)
    page.goto(dashboard.url + "/")
    expect(page.locator("svg[aria-label='Top events']")).to_contain_text("<script>window.__xss=3")
    page.goto(dashboard.url + "/segments/new")
    page.locator("#builder .adders").get_by_role("button", name="+ Event").click()
    page.locator(".cond.event").get_by_label("Event", exact=True).select_option(label=XSS_EVENT)
    expect(page.locator("#live-count")).to_have_text("1")
    expect(page.locator("#live-sample a")).to_have_text(XSS_NAME)
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0


def test_build_a_date_condition_count_it_and_see_problems_beside_their_fields(
    page: Any, dashboard: Dashboard
) -> None:
    sign_in(page, dashboard.url)
    page.goto(dashboard.url + "/segments/new")
    live = page.locator("#live-count")
    root = page.locator("#builder > .group")
    root.locator(":scope > .adders").get_by_role("button", name="+ Event").click()
    event = root.locator(".cond.event")
    event.get_by_label("Event", exact=True).select_option(label="Order Completed")
    event.get_by_label("How often").select_option("gte")
    event.get_by_label("Times").fill("2")
    event.get_by_label("When").select_option("between")
    today = datetime.now(UTC).date()
    first, last = (today - timedelta(days=40)).isoformat(), (today - timedelta(days=5)).isoformat()
    event.get_by_label("First day").fill(first)
    event.get_by_label("Last day").fill(last)
    event.get_by_label("Time zone").select_option("Europe/Berlin")
    between = {
        "and": [
            {
                "event": "Order Completed",
                "count": {"op": "gte", "value": 2},
                "between": [first, last],
                "tz": "Europe/Berlin",
            }
        ]
    }
    expect(live).to_have_text(_count(dashboard, between))
    assert _count(dashboard, between) != _count(dashboard, {"event": "Order Completed"})

    event.get_by_label("When").select_option("in_month")
    event.get_by_label("Month").fill(today.isoformat()[:7])
    in_month = {
        "event": "Order Completed",
        "count": {"op": "gte", "value": 2},
        "in_month": today.isoformat()[:7],
    }
    expect(live).to_have_text(_count(dashboard, {"and": [{**in_month, "tz": "Europe/Berlin"}]}))

    # problems in words, beside the input they concern, instead of paths
    event.get_by_label("Times").fill("-1")
    times_problem = event.locator(".field-error")
    expect(times_problem).to_have_text("Number of times must be 0 or more")
    expect(event.get_by_label("Times")).to_have_attribute("aria-invalid", "true")
    expect(live).to_have_text(NO_VALUE)
    expect(page.locator("#live-problems li")).to_have_count(0)
    expect(page.locator("#live-status")).to_have_text("Fix the marked fields first.")
    event.get_by_label("Times").fill("1")
    expect(times_problem).to_have_count(0)
    event.get_by_label("When").select_option("range")
    event.get_by_label("From day").fill(last)
    event.get_by_label("Until day").fill(first)
    expect(event.locator(".field-error")).to_contain_text("the range is empty")
    expect(event.get_by_label("Until day")).to_have_attribute("aria-invalid", "true")
    event.get_by_label("Until day").fill(last)
    ranged = {"event": "Order Completed", "on_or_after": last, "on_or_before": last, "tz": "Europe/Berlin"}
    expect(live).to_have_text(_count(dashboard, {"and": [ranged]}))

    page.locator("#segment-name").fill("Ordered on one day")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_have_text("Segment saved.")
    with dashboard.engine.connect() as conn:
        saved = conn.execute(sa.select(segments).where(segments.c.name == "Ordered on one day")).one()
    assert saved.criteria == {"and": [ranged]}
    expect(page.locator(".cond.event").get_by_label("From day")).to_have_value(last)  # reopens as built


def test_every_calendar_form_reopens_in_the_builder_and_saves_unchanged(
    page: Any, dashboard: Dashboard
) -> None:
    from opencdp.segments import store

    order = {"event": "Order Completed"}
    criteria = {
        "and": [
            {**order, "in_month": "2026-03", "count": {"op": "gte", "value": 2}},
            {**order, "between": ["2026-12-01", "2026-12-15"], "tz": "Europe/Berlin"},
            {**order, "on": "2026-12-24"},
            {**order, "after": "2026-11-20", "before": "2026-12-01", "tz": "America/New_York"},
            {**order, "on_or_before": "2025-12-31", "count": {"op": "eq", "value": 0}},
            {**order, "first_occurred": {"op": "in_month", "value": "1997-03"}},
            {**order, "last_occurred": {"op": "before", "value": "2026-01-01", "tz": "Asia/Tokyo"}},
            {**order, "last_occurred": {"op": "before_days", "value": 90}},
            {**order, "within_days": 30},
            {"computed": "first_order_at", "op": "between", "value": ["2026-01-01", "2026-03-31"]},
            {"not": {"trait": "country", "op": "on_or_after", "value": "2026-01-01", "tz": "Europe/Berlin"}},
        ]
    }
    saved = store.save(dashboard.engine, "Every calendar form", criteria, "")
    sign_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/segments/{saved.id}")
    expect(page.locator("#live-count")).to_have_text(_count(dashboard, criteria))
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Segment saved.")
    assert store.get(dashboard.engine, "Every calendar form").criteria == saved.criteria  # as stored


def test_sessions_panel_expands_to_a_visits_events(page: Any, dashboard: Dashboard) -> None:
    since = datetime.now(UTC) - timedelta(days=80)
    with dashboard.engine.connect() as conn:
        profile_id = conn.execute(
            sa.select(profile_events.c.profile_id)
            .join(profiles, profiles.c.id == profile_events.c.profile_id)
            .where(profile_events.c.type == "page", profile_events.c.ts >= since)
            .where(profiles.c.merged_into.is_(None))
            .order_by(profile_events.c.ts.desc())
            .limit(1)
        ).scalar_one()
    sign_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/profiles/{profile_id}")
    first = page.locator("#sessions .session").first
    expect(first.locator("[data-fact=session-start]")).to_be_visible()
    expect(first.locator(".session-events")).to_be_hidden()
    first.locator("summary").click()  # <details>: no script needed
    expect(first.locator(".session-events li").first).to_be_visible()
