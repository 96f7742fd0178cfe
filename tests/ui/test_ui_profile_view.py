"""The 360° view in-process on SQLite and PostgreSQL: header values, purchases, channels, consent
for every defined purpose and the timeline in both orders, each checked against the database."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from babel import Locale
from fastapi.testclient import TestClient

from opencdp.privacy.consent import define_purpose, list_purposes
from opencdp.store.schema import event_owners, events, identities, profiles, sources
from opencdp.system import OpenCDP
from opencdp.ui import display
from opencdp.ui.profile_view import channel_of, consent_rows
from tests.identity_helpers import process
from tests.ui.demo_data import _write

EN = display.Viewer(Locale.parse("en"), ZoneInfo("UTC"), "EUR")


def _best_customer(cdp: OpenCDP) -> Any:
    """The live profile with the most orders (ties by id, so the choice is stable)."""
    with cdp.engine.connect() as conn:
        rows = conn.execute(
            sa.select(profiles).where(profiles.c.merged_into.is_(None)).order_by(profiles.c.id)
        ).all()
    return max(rows, key=lambda r: (r.computed or {}).get("order_count", 0))


def _events_of(cdp: OpenCDP, profile_id: str) -> list[Any]:
    with cdp.engine.connect() as conn:
        return conn.execute(
            sa.select(events.c.id, events.c.timestamp, events.c.event, events.c.type, sources.c.name)
            .join(event_owners, event_owners.c.event_id == events.c.id)
            .join(identities, identities.c.id == event_owners.c.identity_id)
            .join(sources, sources.c.id == events.c.source_id)
            .where(identities.c.profile_id == profile_id)
        ).all()


def _identifier(cdp: OpenCDP, profile_id: str, kind: str) -> str:
    with cdp.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(identities.c.value).where(
                    identities.c.profile_id == profile_id, identities.c.type == kind
                )
            ).scalar_one()
        )


def _fact(text: str, name: str) -> str:
    found = re.search(rf'data-fact="{name}">([^<]*)<', text)
    assert found, name
    return html.unescape(found.group(1))


def test_header_and_purchases_show_the_profiles_values(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    best = _best_customer(shop)
    computed = best.computed
    assert computed["order_count"] >= 2
    text = client.get(f"/profiles/{best.id}").text
    assert _fact(text, "email") == best.traits["email"]
    assert _fact(text, "country") == best.traits["country"]
    assert _fact(text, "segment") == computed["rfm_segment"]
    assert _fact(text, "value") == display.format_money(computed["total_revenue"], EN)
    assert re.fullmatch(r"€[\d,]+\.\d\d", _fact(text, "value"))  # rounded, with the currency
    assert _fact(text, "last-order") == display.format_when(computed["last_order_at"], EN)
    assert _fact(text, "orders") == str(computed["order_count"])
    assert _fact(text, "favourite") == computed["favourite_category"]
    orders = re.search(r'<table class="table compact" id="last-orders">(.*?)</table>', text, re.S)
    assert orders and orders.group(1).count("<tr>") == min(5, computed["order_count"])
    # computed traits by their names for people, values readable: no JSON, no ISO, no snake_case
    assert "Value (all orders)" in text and "RFM segment" in text
    computed_panel = text[text.index('id="computed"') : text.index('id="memberships"')]
    assert "T0" not in computed_panel and '["' not in computed_panel
    assert display.format_money(computed["largest_order"], EN) in computed_panel


def test_channels_with_their_last_touch(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    best = _best_customer(shop)
    evs = _events_of(shop, best.id)
    expected: dict[str, Any] = {}
    for e in evs:
        channel = channel_of(e.name, e.type, e.event)
        expected[channel] = max(expected.get(channel, e.timestamp), e.timestamp)
    assert {"web", "email"} <= set(expected)
    text = client.get(f"/profiles/{best.id}").text
    shown = re.findall(r'<tr data-channel="([^"]+)">.*?<td class="nowrap">([^<]*)</td>', text)
    assert dict(shown) == {c: display.format_when(at, EN) for c, at in expected.items()}
    assert [c for c, _ in shown] == sorted(expected, key=lambda c: expected[c], reverse=True)


def test_channel_rules() -> None:
    assert channel_of("demo-web", "track", "Email Opened") == "email"  # the event name first
    assert channel_of("shop-backend", "track", "SMS Replied") == "sms"
    assert channel_of("zendesk", "track", "Call Completed") == "call"
    assert channel_of("newsletter-mailer", "track", "Unsubscribed") == "email"  # then the source
    assert channel_of("ios", "identify", None) == "app"
    assert channel_of("backend", "screen", "Home") == "app"  # then the call type
    assert channel_of("backend", "page", "Home") == "web"
    assert channel_of("pos-terminal", "track", "Purchase") == "pos-terminal"  # else the source


def test_consent_lists_every_defined_purpose(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    define_purpose(shop.engine, "loyalty_mail", "The loyalty programme's letters")
    as_role("analyst")
    with shop.engine.connect() as conn:
        rows = conn.execute(
            sa.select(profiles.c.id, profiles.c.consent_meta).where(profiles.c.merged_into.is_(None))
        ).all()
    granted = next(r for r in rows if (r.consent_meta or {}).get("email_marketing", [False])[0])
    denied = next(r for r in rows if (r.consent_meta or {}).get("email_marketing", [True])[0] is False)
    never = next(r for r in rows if not r.consent_meta)
    purposes = [p["name"] for p in list_purposes(shop.engine)]
    assert "loyalty_mail" in purposes and len(purposes) >= 6
    for row in (granted, denied, never):
        meta = row.consent_meta or {}
        text = client.get(f"/profiles/{row.id}").text
        cells = dict(
            re.findall(r'<tr data-purpose="([^"]+)">.*?<span class="badge[^"]*">([^<]+)</span>', text, re.S)
        )
        assert list(cells)[: len(purposes)] == purposes  # every defined purpose, in order
        for purpose, shown in cells.items():
            expected = "not asked" if purpose not in meta else "granted" if meta[purpose][0] else "denied"
            assert shown == expected, (purpose, meta.get(purpose))
        assert cells["loyalty_mail"] == "not asked"  # defined, never asked
        for record in meta.values():
            assert f"{display.format_when(record[1], EN)} via {record[4]}" in text


def test_timeline_by_event_time_or_by_arrival(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    best = _best_customer(shop)
    user_id = best.traits.get("user_id") or _identifier(shop, best.id, "user_id")
    # arrives last but happened early (not before the first event: that would re-anchor the profile)
    late = {"type": "track", "messageId": "late-1", "userId": user_id, "event": "Store Visit"}
    at = best.first_seen + timedelta(minutes=1)
    _write(shop.engine, "app", [late | {"timestamp": at.isoformat()}], datetime.now(UTC))
    process(shop.engine)
    evs = _events_of(shop, best.id)
    assert len(evs) > 25
    by_time = [e.id for e in sorted(evs, key=lambda e: (e.timestamp, e.id), reverse=True)]
    by_arrival = sorted((e.id for e in evs), reverse=True)
    assert by_time != by_arrival  # the demo's log order is not event order for this customer
    for query, expected in (("", by_time), ("?order=arrival", by_arrival)):
        seen: list[int] = []
        url = f"/profiles/{best.id}{query}"
        while url:
            page = client.get(url)
            assert page.status_code == 200
            seen += [int(i) for i in re.findall(r'<li class="event type-\w+" data-id="(\d+)">', page.text)]
            more = re.search(r'href="(/profiles/[^"]+\?before=\d+[^"#]*)#timeline" rel="next"', page.text)
            url = html.unescape(more.group(1)) if more else ""
            if query:
                assert not more or "order=arrival" in more.group(1)
        assert seen == expected, query
    assert client.get(f"/profiles/{best.id}?order=sideways").status_code == 400


def test_plain_traits_read_as_words(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    best = _best_customer(shop)
    text = client.get(f"/profiles/{best.id}").text
    traits = text[text.index('id="traits"') : text.index('id="computed"')]
    assert "First name" in traits and "first_name</th>" not in traits
    if "newsletter" in best.traits:
        assert ">yes<" in traits or ">no<" in traits


def test_consent_rows_keep_undefined_purposes_after_the_defined_ones() -> None:
    purposes = [{"name": "analytics", "description": "a"}, {"name": "sms", "description": "s"}]
    meta = {
        "sms": [False, "2026-11-01T10:00:00+00:00", "m1", 1, "demo-app", None],
        "legacy": [True, "t", "m2", 1],
    }
    rows = consent_rows(purposes, meta)
    assert [(r["purpose"], r["status"], r["defined"]) for r in rows] == [
        ("analytics", "not asked", True),
        ("sms", "denied", True),
        ("legacy", "granted", False),
    ]
    assert rows[0]["at"] is None and rows[1]["source"] == "demo-app" and rows[2]["source"] is None
