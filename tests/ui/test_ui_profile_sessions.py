"""The 360° view's Sessions panel, in-process on SQLite and PostgreSQL: the latest visits with their
start, length, pages, events and entry, each expandable (<details>) to its events."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, profile_of


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _messages(base: datetime) -> list[dict[str, Any]]:
    """Two sessions: one 2 days ago from the newsletter (3 events, 2 pages, 12 min 5 s), one
    yesterday (1 page, direct)."""
    old = base - timedelta(days=2)
    new = base - timedelta(days=1)
    page = {"type": "page", "userId": "s-1"}
    return [
        page
        | {
            "messageId": "a",
            "name": "Home",
            "timestamp": _at(old),
            "context": {
                "campaign": {"source": "newsletter", "name": "spring <b>sale</b>"},
                "page": {"path": "/home"},
            },
        },
        {
            "type": "track",
            "userId": "s-1",
            "messageId": "b",
            "event": "Product Viewed",
            "timestamp": _at(old + timedelta(minutes=5)),
        },
        page
        | {
            "messageId": "c",
            "name": "Shoes",
            "timestamp": _at(old + timedelta(minutes=12, seconds=5)),
            "context": {"page": {"path": "/shoes"}},
        },
        page | {"messageId": "d", "name": "Home", "timestamp": _at(new), "context": {"page": {"path": "/"}}},
        # long ago: outside the panel's 90 days
        page | {"messageId": "e", "name": "Old", "timestamp": _at(base - timedelta(days=200))},
    ]


def _sessions(text: str) -> list[str]:
    panel = text[text.index('id="sessions"') :]
    panel = panel[: panel.index("</section>")]
    return re.findall(r'<li class="session".*?</details>', panel, re.S)


def _fact(block: str, name: str) -> str:
    found = re.search(rf'data-fact="{name}">([^<]*)<', block)
    assert found, name
    return html.unescape(found.group(1))


def test_sessions_panel_lists_the_latest_visits(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    log_messages(cdp.engine, _messages(now))
    process(cdp.engine)
    pid = profile_of(cdp.engine, "user_id", "s-1")
    as_role("analyst")
    page = client.get(f"/profiles/{pid}")
    assert page.status_code == 200, page.text
    assert "a new one after 30 minutes without an event" in page.text
    newest, older = _sessions(page.text)
    assert _fact(newest, "session-duration") == "0 s"
    assert _fact(newest, "session-pages") == "1 page"
    assert _fact(newest, "session-events") == "1 event"
    assert _fact(newest, "session-source") == "direct"
    assert _fact(newest, "session-landing") == "/"
    assert _fact(older, "session-duration") == "12 min 5 s"
    assert _fact(older, "session-pages") == "2 pages"
    assert _fact(older, "session-events") == "3 events"
    assert _fact(older, "session-source") == "newsletter"
    assert _fact(older, "session-campaign") == "spring <b>sale</b>"  # escaped, shown as text
    assert "&lt;b&gt;" in older
    assert _fact(older, "session-landing") == "/home"
    assert "<details>" in older and "Product Viewed" in older and "/shoes" in older
    assert "Old" not in "".join(_sessions(page.text))


def test_sessions_panel_without_visits(
    client: TestClient, cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    log_messages(cdp.engine, [{"type": "identify", "userId": "n-1", "traits": {"plan": "pro"}}])
    process(cdp.engine)
    as_role("analyst")
    text = client.get(f"/profiles/{profile_of(cdp.engine, 'user_id', 'n-1')}").text
    assert "No visits in the last 90 days." in text
