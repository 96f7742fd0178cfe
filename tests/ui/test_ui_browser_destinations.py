"""Destinations in a real browser against a real `opencdp serve` (the shared dashboard fixture): a
webhook to a local receiver, its test message, an event forwarded and refused into a dead letter,
and that dead letter replayed and delivered by the server's delivery worker; and a journey created
and activated (its errors are tested in-process: a 400 page is a console error here)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from opencdp.access.keys import create_source
from opencdp.store.schema import deliveries, destinations
from tests.receivers import Receiver, verify_signature
from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
SECRET = "browser-test-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _wait_for(what: str, found: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


def _delivery(dashboard: Dashboard, dest: int, status: str) -> str | None:
    with dashboard.engine.connect() as conn:
        key: str | None = conn.execute(
            sa.select(deliveries.c.key).where(
                deliveries.c.destination_id == dest, deliveries.c.status == status
            )
        ).scalar()
    return key


def test_webhook_test_message_and_a_replayed_dead_letter(
    page: Any, dashboard: Dashboard, receiver: Receiver
) -> None:
    sign_in(page, dashboard.url)
    page.get_by_role("link", name="Destinations", exact=True).click()
    page.get_by_role("link", name="New destination").click()
    page.locator("#destination-name").fill("Local receiver")
    page.locator("#destination-kind").select_option("smtp")  # the example follows the kind
    expect(page.locator("#destination-config")).to_have_value(re.compile("smtp.example.com"))
    expect(page.locator("#example-smtp")).to_be_visible()
    expect(page.locator("#example-webhook")).to_be_hidden()
    page.locator("#destination-kind").select_option("webhook")
    expect(page.locator("#secret-hint")).to_contain_text("signing key")
    page.locator("#destination-config").fill(json.dumps({"url": receiver.url}))
    page.locator("#destination-secret").fill(SECRET)
    page.get_by_role("button", name="Save destination").click()
    expect(page.get_by_role("status")).to_have_text("Destination saved.")
    expect(page.locator("#secret-state")).to_have_text("set (encrypted, not shown)")
    with dashboard.engine.connect() as conn:
        dest = conn.execute(
            sa.select(destinations.c.id).where(destinations.c.name == "Local receiver")
        ).scalar_one()

    page.get_by_role("button", name="Send test message").click()
    expect(page.locator("#test-outcome")).to_contain_text("Test message: delivered")
    assert len(receiver.received) == 1 and verify_signature(SECRET, receiver.received[0])

    # an event forwarded while the receiver refuses it becomes a dead letter at once
    receiver.status = 422
    page.locator("#rule-name").fill("Browser orders")
    page.locator("#rule-filter").fill('{"events": ["Browser Order"]}')
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("status")).to_contain_text("Forwarding rule added")
    expect(page.locator("#rules")).to_contain_text("Browser Order")
    write_key = create_source(dashboard.engine, "browser-destinations")[1]
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    sent = httpx.post(
        dashboard.url + "/v1/track",
        json={"userId": "browser-buyer", "event": "Browser Order", "properties": {"total": 5}},
        headers=auth,
        timeout=10,
    )
    assert sent.status_code == 200, sent.text
    key = _wait_for("a dead letter", lambda: _delivery(dashboard, dest, "dead"))

    page.reload()
    page.locator("#dead-link").click()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    row = page.locator(f'#deliveries tr[data-key="{key}"]')
    expect(row).to_contain_text("HTTP 422")
    receiver.status = 200
    row.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_have_text("1 dead letter queued again.")
    _wait_for("the replayed delivery", lambda: _delivery(dashboard, dest, "delivered"))
    assert receiver.idempotency_keys().count(key) == 1  # the refused attempt is not recorded
    page.get_by_role("link", name=re.compile("^delivered")).click()
    expect(page.locator(f'#deliveries tr[data-key="{key}"]')).to_be_visible()


def test_a_journey_created_and_activated(page: Any, dashboard: Dashboard) -> None:
    sign_in(page, dashboard.url)
    page.get_by_role("link", name="Journeys", exact=True).click()
    page.get_by_role("link", name="New journey").click()
    expect(page.locator("#journey-definition")).to_have_value(re.compile("Checkout Started"))
    expect(page.locator("#step-reference")).to_contain_text("wait_for")
    page.locator("#journey-name").fill("Browser welcome")
    definition = {
        "entry": {"event": "Browser Signed Up"},
        "steps": [{"id": "a day", "wait": {"days": 1}}, {"id": "tag", "tag": {"add": "welcomed"}}],
    }
    page.locator("#journey-definition").fill(json.dumps(definition))
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_contain_text("Journey saved as a draft")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("#journey-status")).to_have_text("active")
    expect(page.locator('#steps tr[data-step="a day"]')).to_contain_text("wait 1 d")
    expect(page.locator("#versions tr[data-version]")).to_have_count(1)
