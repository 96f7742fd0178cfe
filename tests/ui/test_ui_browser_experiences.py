"""Experiences in a real browser against a real `opencdp serve` (the shared dashboard fixture): an
experience created through the form, then enabled from the list (its errors are tested in-process:
a 400 page is a console error here)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.browser_env import CHROMIUM, Dashboard, sign_in

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]


def test_an_experience_created_through_the_form_and_enabled(page: Any, dashboard: Dashboard) -> None:
    sign_in(page, dashboard.url)
    page.get_by_role("link", name="Experiences", exact=True).click()
    page.get_by_role("link", name="New experience").click()
    expect(page.locator("#experience-definition")).to_have_value(re.compile("winter boots hero"))
    expect(page.locator("#audience-reference")).to_contain_text("session_event")
    definition = {
        "name": "Browser hero",
        "placement": "browser-hero",
        "strategy": "weighted",
        "variants": [
            {"name": "a", "weight": 1, "content": {"html": "<b>A</b>"}},
            {"name": "b", "weight": 1, "content": {"html": "<b>B</b>"}},
        ],
        "holdout_percent": 25,
    }
    page.locator("#experience-definition").fill(json.dumps(definition))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Experience saved, disabled")
    row = page.locator('#experiences tr[data-experience="Browser hero"]')
    expect(row).to_contain_text("browser-hero")
    expect(row).to_contain_text("weighted")
    expect(row).to_contain_text("25.0 %")
    expect(row.locator(".status-disabled")).to_have_text("disabled")
    row.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status")).to_contain_text("Experience enabled")
    expect(page.locator('#experiences tr[data-experience="Browser hero"] .status-enabled')).to_have_text(
        "enabled"
    )
    page.locator('#experiences tr[data-experience="Browser hero"]').get_by_role("link", name="Edit").click()
    expect(page.locator("#experience-status")).to_have_text("enabled")
    expect(page.locator("#experience-definition")).to_have_value(re.compile('"holdout_percent": 25'))
