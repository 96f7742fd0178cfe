"""The Forms pages in a real browser against the shared dashboard server: form events sent to the
collection API show up in the list and in the form's funnel, and the period and segment filters
work (no script error, no CSP violation)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from opencdp.access.keys import create_source
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("browser"),  # the one dashboard server of the browser tests
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
FORM = "browser-signup"


def _send(dashboard: Dashboard) -> None:
    write_key = create_source(dashboard.engine, f"forms-{time.monotonic_ns()}")[1]
    start = datetime.now(UTC) - timedelta(hours=1)
    batch: list[dict[str, Any]] = []
    for n, (visitor, seconds, event, field, message) in enumerate(
        [
            ("v1", 0, "Form Field Focused", "email", None),
            ("v1", 4, "Form Field Changed", "email", None),
            ("v1", 5, "Form Field Focused", "password", None),
            ("v1", 9, "Form Field Errored", "password", "Too short"),
            ("v1", 20, "Form Field Changed", "password", None),
            ("v1", 21, "Form Submitted", None, None),
            ("v2", 0, "Form Field Focused", "email", None),
            ("v2", 30, "Form Abandoned", "email", None),
        ]
    ):
        props = {
            "form_id": FORM,
            **({"field": field} if field else {}),
            **({"message": message} if message else {}),
        }
        batch.append(
            {
                "type": "track",
                "anonymousId": f"{FORM}-{visitor}",
                "event": event,
                "properties": props,
                "timestamp": (start + timedelta(seconds=seconds)).isoformat(),
                "messageId": f"{FORM}-{n}",
            }
        )
    sent = httpx.post(dashboard.url + "/v1/batch", json={"writeKey": write_key, "batch": batch}, timeout=10)
    assert sent.status_code == 200, sent.text


def test_forms_pages(page: Any, dashboard: Dashboard) -> None:
    _send(dashboard)
    sign_in(page, dashboard.url)
    deadline = time.monotonic() + 30
    while True:
        page.goto(dashboard.url + "/forms")
        if page.locator(f'#forms a:text-is("{FORM}")').count():
            break
        assert time.monotonic() < deadline, "the form events were not processed in 30 s"
        time.sleep(0.5)
    assert page.get_attribute("nav.mainnav a[href='/forms']", "aria-current") == "page"
    page.click(f'#forms a:text-is("{FORM}")')
    page.wait_for_selector("#fields")
    assert page.inner_text("#total-visitors") == "2"
    assert page.inner_text("#total-submitted") == "1"
    assert page.inner_text("#total-abandoned") == "1"
    rows = page.locator("#fields tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-field") == "email"
    assert "Too short (1)" in rows.nth(1).inner_text()
    assert page.locator("figure.chart svg").count() == 1
    page.select_option("#filter-days", "7")
    page.click("#form-filters button[type=submit]")
    page.wait_for_url("**days=7**")
    assert page.inner_text("#total-visitors") == "2"
