"""Unmerge in a real browser against a real `opencdp serve` (the shared dashboard fixture): an
admin opens a customer's 360° view, clicks Unmerge on a link, confirms, sees the pair split with
the reason, and allows it again (which restores the customer as it was)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from opencdp.store.schema import identities, identity_links
from tests.ui.browser_env import CHROMIUM, Dashboard, create_user, sign_in, watched_page

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
ADMIN, PASSWORD = "unmerge-admin@example.com", "an admin's password"


def _admin(dashboard: Dashboard) -> None:
    create_user(dashboard.env, ADMIN, PASSWORD, "admin")


def _a_link(dashboard: Dashboard) -> tuple[str, int, str]:
    """A small profile's link between an e-mail-less device and the rest: (profile, link, device)."""
    with dashboard.engine.connect() as conn:
        rows = conn.execute(
            sa.select(identity_links.c.profile_id, identity_links.c.id, identity_links.c.right_value)
            .where(identity_links.c.right_type == "anonymous_id", identity_links.c.rule == "same_event")
            .order_by(identity_links.c.id)
        ).all()
    return rows[-1][0], rows[-1][1], rows[-1][2]


def _owner(dashboard: Dashboard, value: str) -> str:
    with dashboard.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(identities.c.profile_id).where(
                    identities.c.type == "anonymous_id", identities.c.value == value
                )
            ).scalar_one()
        )


def test_unmerge_a_link_and_allow_it_again(browser: Any, dashboard: Dashboard) -> None:
    _admin(dashboard)
    pid, link_id, device = _a_link(dashboard)
    questions: list[str] = []
    with watched_page(browser, confirms=questions) as page:
        sign_in(page, dashboard.url, ADMIN, PASSWORD)
        page.goto(f"{dashboard.url}/profiles/{pid}#merges")
        link = page.locator(f"#link-{link_id}")
        expect(link.get_by_role("button", name="Unmerge")).to_be_visible()
        link.get_by_label("Reason for unmerging").fill("a shared device")
        link.get_by_role("button", name="Unmerge").click()
        expect(page.locator("#unmerge-done")).to_contain_text("Unmerged")
        assert questions and questions[0].startswith("Unmerge ") and device in questions[0]
        assert _owner(dashboard, device) != pid
        rejection = page.locator(".merges.rejections li").first
        expect(rejection).to_contain_text(f"rejected by {ADMIN} on")
        expect(rejection).to_contain_text("a shared device")
        rejection.get_by_role("button", name="Allow again").click()
        expect(page.locator("#unmerge-done")).to_contain_text("Allowed again")
        assert len(questions) == 2 and questions[1].startswith("Allow ")
        assert _owner(dashboard, device) == pid
        expect(page.locator(".merges.rejections")).to_have_count(0)
