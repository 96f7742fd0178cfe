"""The profile list in-process on SQLite and PostgreSQL: pages with their total, filters, sort,
one exact hit opening the profile, and the CSV export with consent, checked against the database."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.privacy.consent import define_purpose
from opencdp.store.schema import audit_log, identities, profiles
from opencdp.system import OpenCDP
from opencdp.ui import profiles as data
from tests.identity_helpers import process
from tests.ui.demo_data import _write

LINK = re.compile(r'<td><a href="/profiles/([^"]+)">')


def _live(cdp: OpenCDP) -> list[Any]:
    with cdp.engine.connect() as conn:
        rows = conn.execute(sa.select(profiles).where(profiles.c.merged_into.is_(None))).all()
        emails: dict[str, list[str]] = {}
        for r in conn.execute(
            sa.select(identities.c.profile_id, identities.c.type, identities.c.value).where(
                identities.c.profile_id.is_not(None)
            )
        ):
            emails.setdefault(r.profile_id, []).append(f"{r.type}:{r.value}")
    return [dict(r._mapping) | {"idents": emails.get(r.id, [])} for r in rows]


def _walk(client: TestClient, url: str) -> tuple[list[str], list[str]]:
    """Every profile id over all pages, and each page's "first-last of total" line
    (the page's en dash as a hyphen)."""
    ids: list[str] = []
    counts: list[str] = []
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        ids += LINK.findall(page.text)
        found = re.search(
            r'<p id="list-count"><strong>([^<]+)</strong> of <strong>([^<]+)</strong>', page.text
        )
        shown = f"{html.unescape(found.group(1))} of {found.group(2)}" if found else ""
        counts.append(shown.replace("\u2013", "-"))
        more = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = html.unescape(more.group(1)) if more else ""
    return ids, counts


def test_every_profile_over_pages_with_the_total(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "PAGE_SIZE", 10)
    as_role("analyst")
    live = _live(shop)
    total = len(live)
    assert total > 30
    ids, counts = _walk(client, "/profiles")
    expected = [r["id"] for r in sorted(live, key=lambda r: (-r["last_seen"].timestamp(), r["id"]))]
    assert ids == expected  # last seen first, every profile once
    assert counts[0] == f"1-10 of {total}" and counts[1] == f"11-20 of {total}"
    assert counts[-1] == f"{(len(counts) - 1) * 10 + 1}-{total} of {total}"
    by_value, _ = _walk(client, "/profiles?sort=value")
    values = [next(r for r in live if r["id"] == i)["computed"].get("total_revenue") for i in by_value]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True) and values[: len(known)] == known  # no value last
    by_orders, _ = _walk(client, "/profiles?sort=orders")
    orders = [next(r for r in live if r["id"] == i)["computed"].get("order_count") or 0 for i in by_orders]
    assert orders == sorted(orders, reverse=True)
    assert client.get("/profiles?sort=nonsense").status_code == 400
    assert client.get("/profiles?sort=relevance").status_code == 400  # only with a search text
    assert client.get("/profiles?page=0").status_code == 400
    past = client.get("/profiles?sort=orders&page=999", follow_redirects=False)
    assert past.status_code == 303 and past.headers["location"] == f"/profiles?sort=orders&page={len(counts)}"


def test_search_results_page_with_their_total(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "PAGE_SIZE", 10)
    as_role("analyst")
    live = _live(shop)
    needle = "example"  # in nearly every e-mail address, never exactly one
    expected = {
        r["id"]
        for r in live
        if any(needle in i.split(":", 1)[1].lower() for i in r["idents"])
        or any(needle in str(v).lower() for v in r["traits"].values())
    }
    assert len(expected) > 20
    ids, counts = _walk(client, f"/profiles?q={needle}")
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert counts[0] == f"1-10 of {len(expected)}"


def test_filters_narrow_the_list(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "PAGE_SIZE", 500)
    as_role("analyst")
    live = _live(shop)
    now = datetime.now(UTC)
    country = max(
        {r["traits"].get("country") for r in live} - {None},
        key=lambda c: sum(r["traits"].get("country") == c for r in live),
    )
    segment = next(r["computed"]["rfm_segment"] for r in live if (r["computed"] or {}).get("rfm_segment"))
    cases = {
        f"country={country}": lambda r: r["traits"].get("country") == country,
        f"segment={segment}": lambda r: (r["computed"] or {}).get("rfm_segment") == segment,
        "has_email=1": lambda r: any(i.startswith("email:") for i in r["idents"]),
        "consent=email_marketing": lambda r: (r["consent"] or {}).get("email_marketing") is True,
        "seen=7": lambda r: r["last_seen"] >= now - timedelta(days=7),
        f"country={country}&consent=email_marketing&has_email=1": lambda r: (
            r["traits"].get("country") == country
            and (r["consent"] or {}).get("email_marketing") is True
            and any(i.startswith("email:") for i in r["idents"])
        ),
    }
    for query, keep in cases.items():
        expected = {r["id"] for r in live if keep(r)}
        assert 0 < len(expected) < len(live), query
        ids, counts = _walk(client, f"/profiles?{query}")
        assert set(ids) == expected and len(ids) == len(expected), query
        assert counts == [f"1-{len(expected)} of {len(expected)}"], query
    assert client.get("/profiles?seen=abc").status_code == 400
    assert client.get("/profiles?consent=no_such_purpose").status_code == 400


def test_one_exact_hit_opens_the_profile(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    as_role("analyst")
    with shop.engine.connect() as conn:
        user_id, pid = conn.execute(
            sa.select(identities.c.value, identities.c.profile_id)
            .where(identities.c.type == "user_id")
            .order_by(identities.c.value)
            .limit(1)
        ).one()
    opened = client.get("/profiles", params={"q": user_id}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == f"/profiles/{pid}"
    filtered = client.get("/profiles", params={"q": user_id, "seen": "36500"}, follow_redirects=False)
    assert filtered.status_code == 200 and f'href="/profiles/{pid}"' in filtered.text  # a list, filtered


def _export(client: TestClient, **params: str) -> list[dict[str, str]]:
    response = client.get("/profiles/export.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_export_has_only_those_who_consented(
    client: TestClient, shop: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    now = datetime.now(UTC)
    formula = {
        "type": "identify",
        "messageId": "formula-1",
        "userId": "=cmd|' /C calc'!A0",
        "timestamp": now.isoformat(),
        "traits": {"email": "formula@example.com", "first_name": '=HYPERLINK("http://x")', "country": "DE"},
        "context": {"consent": {"purposes": {"email_marketing": True}}},
    }
    _write(shop.engine, "web", [formula], now)
    process(shop.engine)
    as_role("analyst")
    assert client.get("/profiles/export.csv").status_code == 400  # a purpose must be chosen
    assert client.get("/profiles/export.csv", params={"purpose": "nonsense"}).status_code == 400
    live = _live(shop)
    consented = {r["id"] for r in live if (r["consent"] or {}).get("email_marketing") is True}
    assert 0 < len(consented) < len(live)
    rows = _export(client, purpose="email_marketing")
    assert {r["profile_id"] for r in rows} == consented and len(rows) == len(consented)
    assert rows[0].keys() == set(data.EXPORT_COLUMNS)
    risky = next(r for r in rows if r["email"] == "formula@example.com")
    assert risky["first_name"].startswith("'=") and risky["user_id"].startswith("'=")
    # the list's filters and search apply; nobody without consent, whatever the filters say
    german = _export(client, purpose="email_marketing", country="DE", q="example")
    assert {r["profile_id"] for r in german} == {
        r["id"]
        for r in live
        if r["id"] in consented
        and r["traits"].get("country") == "DE"
        and any("example" in i.split(":", 1)[1].lower() for i in r["idents"])
    }
    texts = {r["id"] for r in live if (r["consent"] or {}).get("sms") is True}
    assert texts != consented and {r["profile_id"] for r in _export(client, purpose="sms")} == texts
    define_purpose(shop.engine, "postal_mail", "Letters")
    assert _export(client, purpose="postal_mail") == []  # defined, nobody asked yet
    with shop.engine.connect() as conn:
        entries = conn.execute(
            sa.select(audit_log.c.actor, audit_log.c.detail)
            .where(audit_log.c.action == "profiles.export")
            .order_by(audit_log.c.id)
        ).all()
    assert len(entries) == 4 and all(e.actor.startswith("user:") for e in entries)
    assert entries[1].detail == {"purpose": "email_marketing", "search": True, "filters": {"country": "DE"}}
    page = client.get("/profiles", params={"consent": "email_marketing"})
    form = re.search(r'<form method="get" action="/profiles/export.csv".*?</form>', page.text, re.S)
    assert form and '<option value="email_marketing" selected>' in form.group(0)
