"""The Forms pages in-process, on SQLite and PostgreSQL: the list, one form's funnel and errors,
the segment filter, escaping of names that come from websites."""

from __future__ import annotations

import html
from collections.abc import Callable

from fastapi.testclient import TestClient

from opencdp.system import OpenCDP
from tests.test_form_report import _fill


def test_forms_pages(client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]) -> None:
    _fill(cdp.engine)
    as_role("analyst")
    listing = client.get("/forms?days=90")
    assert listing.status_code == 200, listing.text
    assert 'href="/forms"' in listing.text and 'aria-current="page"' in listing.text
    assert 'href="/forms/signup?days=90"' in listing.text and "newsletter" in listing.text
    page = client.get("/forms/signup?days=90")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert '<strong id="total-visitors">4</strong>' in text
    assert '<tr data-field="email">' in text and '<tr data-field="password">' in text
    assert text.index('data-field="email"') < text.index('data-field="password"')
    assert "Too short (2); Needs a digit (1)" in text
    assert "<svg" in page.text
    pros = html.unescape(client.get("/forms/signup?days=90&segment=pros").text)
    assert '<strong id="total-visitors">2</strong>' in pros
    assert client.get("/forms/signup?segment=nope").status_code == 404
    assert client.get("/forms?days=3").status_code == 400


def test_forms_escape_names_from_websites(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    from opencdp.store.schema import profile_events
    from tests.test_form_report import T0

    evil = "<img src=x onerror=alert(1)>"
    with cdp.engine.begin() as conn:
        conn.execute(
            profile_events.insert(),
            [
                {
                    "event_id": 900,
                    "profile_id": "pX",
                    "type": "track",
                    "name": "Form Field Errored",
                    "ts": T0,
                    "source_id": 1,
                    "properties": {"form_id": evil, "field": evil, "message": evil},
                }
            ],
        )
    as_role("analyst")
    listing = client.get("/forms?days=90")
    at = listing.text.find(evil)
    assert at < 0, listing.text[at - 300 : at + 100]
    assert html.escape(evil, quote=False) in listing.text
    page = client.get("/forms/" + evil.replace("/", "%2F") + "?days=90")
    assert page.status_code == 200 and evil not in page.text
