"""Dashboard pages on the demo shop, in-process on SQLite and PostgreSQL: what they show, and that
everything they show is escaped."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient
from markupsafe import escape

from opencdp.store.schema import identities, profile_events, profiles
from opencdp.system import OpenCDP
from opencdp.ui import charts
from tests.ui.demo_data import XSS_EMAIL, XSS_EVENT, XSS_NAME, XSS_TRAIT


def _profile_id(cdp: OpenCDP, kind: str, value: str) -> str:
    with cdp.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(identities.c.profile_id).where(
                    identities.c.type == kind, identities.c.value == value
                )
            ).scalar_one()
        )


def test_overview_counts_what_is_there(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    page = client.get("/")
    assert page.status_code == 200
    with shop.engine.connect() as conn:
        live = conn.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
        ).scalar_one()
    assert re.search(rf'data-stat="profiles">{live:,}<', page.text)
    assert page.text.count('class="bar c0"') >= 20  # events on most of the last 30 days
    for source in ("demo-web", "demo-app", "demo-email"):
        assert source in page.text
    assert "Order Completed" in page.text and "identified" in page.text
    assert client.get("/?days=90").status_code == 200
    assert client.get("/?days=0").status_code == 400


def test_profile_search_by_identifier_or_trait(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    with shop.engine.connect() as conn:
        email, pid = conn.execute(
            sa.select(identities.c.value, identities.c.profile_id)
            .where(identities.c.type == "email", identities.c.value.like("%@example.com"))
            .order_by(identities.c.value)
            .limit(1)
        ).one()
        phone, phone_pid = conn.execute(
            sa.select(identities.c.value, identities.c.profile_id)
            .where(identities.c.type == "phone")
            .order_by(identities.c.value)
            .limit(1)
        ).one()
        traits = conn.execute(sa.select(profiles.c.traits).where(profiles.c.id == pid)).scalar_one()
    for query, expected in (  # an exact identifier of one customer opens the profile
        (email.upper(), pid),  # e-mails are normalised like the processor does
        (f"{phone[:3]} ({phone[3:6]}) {phone[6:]}", phone_pid),  # written another way
    ):
        page = client.get("/profiles", params={"q": query}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == f"/profiles/{expected}", query
    for query, expected in (  # the rest is a list
        (email.split("@")[0][2:], pid),  # part of an identifier
        (traits["last_name"].lower(), pid),  # a trait value, any case
    ):
        page = client.get("/profiles", params={"q": query})
        assert page.status_code == 200
        assert f'href="/profiles/{expected}"' in page.text, query
    nothing = client.get("/profiles", params={"q": "no such customer anywhere"})
    assert "No profile matches" in nothing.text
    recent = client.get("/profiles")
    assert recent.text.count('href="/profiles/') >= 20


def test_profile_360(client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    as_role("marketer")
    with shop.engine.connect() as conn:  # a merged customer who ordered and answered the consent banner
        buyers = sa.select(profile_events.c.profile_id).where(profile_events.c.name == "Order Completed")
        consented = {r.id for r in conn.execute(sa.select(profiles.c.id, profiles.c.consent)) if r.consent}
        survivor, merged = next(
            (survivor, merged)
            for survivor, merged in conn.execute(
                sa.select(profiles.c.merged_into, profiles.c.id)
                .where(profiles.c.merged_into.in_(buyers))
                .order_by(profiles.c.id)
            )
            if survivor in consented
        )
    client.post(
        "/segments",
        data={
            "name": "Everyone known",
            "criteria": '{"trait": "email", "op": "exists"}',
            "csrf_token": _csrf(client),
        },
    )
    page = client.get(f"/profiles/{survivor}")
    assert page.status_code == 200
    text = page.text
    for section in ("identifiers", "traits", "computed", "memberships", "consent", "timeline", "merges"):
        assert f'id="{section}"' in text
    assert "user_id" in text and "anonymous_id" in text
    assert "order_count" in text and "rfm_segment" in text
    assert "Everyone known" in text
    assert "email_marketing" in text  # consent recorded by the demo's consent banner
    assert "arrived together in one event" in text
    assert merged in text  # listed as merged into this one
    redirect = client.get(f"/profiles/{merged}", follow_redirects=False)
    assert redirect.status_code == 303 and redirect.headers["location"] == f"/profiles/{survivor}"
    assert client.get("/profiles/not-a-profile").status_code == 404


def test_profile_timeline_pages(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    with shop.engine.connect() as conn:
        counts = conn.execute(
            sa.select(profiles.c.id, profiles.c.event_counts).where(profiles.c.merged_into.is_(None))
        ).all()
    pid = max(counts, key=lambda r: sum(r.event_counts.values())).id
    total = sum(dict(counts)[pid].values())
    assert total > 25
    seen: list[str] = []
    url = f"/profiles/{pid}"
    while url:
        page = client.get(url)
        seen += re.findall(r'<li class="event type-', page.text)
        more = re.search(r'href="(/profiles/[^"]+\?before=\d+)#timeline" rel="next"', page.text)
        url = html.unescape(more.group(1)) if more else ""
    assert len(seen) == total


def _csrf(client: TestClient) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/segments").text)
    assert found
    return found.group(1)


def test_user_input_is_shown_as_text_everywhere(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("admin")
    pid = _profile_id(shop, "email", XSS_EMAIL)
    pages = {
        "search": client.get("/profiles", params={"q": "allory"}).text,
        "profile": client.get(f"/profiles/{pid}").text,
        "overview": client.get("/").text,
        "builder": client.get("/segments/new").text,
        "report": client.get("/reports/view", params={"kind": "events_by_source", "event": XSS_EVENT}).text,
    }
    for name, text in pages.items():
        for raw in (XSS_NAME, XSS_TRAIT, XSS_EVENT):
            assert raw not in text, (name, raw)
        assert "window.__xss" in text or name == "report", name  # present, but only as text
    for raw in (XSS_NAME, XSS_EVENT, XSS_TRAIT):
        assert str(escape(raw)) in pages["profile"], raw
    assert "\\u003cscript\\u003e" in pages["builder"]  # the builder's JSON data island escapes "<"
    assert "&lt;script&gt;window.__xss=3" in pages["report"]
    svg = charts.hbar_chart([("<b>bold</b>", 1, "<i>1</i>")], "<label>")
    assert "<b>" not in svg and "&lt;b&gt;bold&lt;/b&gt;" in svg and "&lt;i&gt;" in svg


def test_charts_handle_edges() -> None:
    assert "No data" in charts.bar_chart([], [], "x")
    assert "No data" in charts.stacked_bar_chart(["a", "b"], {"s": [0, 0]}, "x")
    assert charts.nice_max(0) == (1.0, 0.25)
    assert charts.nice_max(97) == (100, 25)
    assert charts.nice_max(1234)[0] >= 1234
    one = charts.line_chart(["d1"], {"s": [3.0]}, "x")
    assert "<polyline" in one and "<svg" in one
    assert "100%" in charts.share_bar([("a", 1), ("b", 0)], "x")
