"""The Customer login page in headless Chromium against the shared `opencdp serve` (accounts off
there): an admin registers a client application through the form, copies its secret, sees it
listed, and removes it after confirming. Problems in the form are tested in-process (a 400 page is
a console error here)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from opencdp.accounts import clients
from tests.ui.browser_env import CHROMIUM, Dashboard, create_user, sign_in, watched_page

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("browser"),  # the one dashboard server of the browser tests
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]
ADMIN, PASSWORD = "customer-login-admin@example.com", "an admin's password"
CLIENT_ID = "browser-shop"


def _admin(dashboard: Dashboard) -> None:
    create_user(dashboard.env, ADMIN, PASSWORD, "admin")


def test_register_a_client_see_it_listed_and_remove_it(browser: Any, dashboard: Dashboard) -> None:
    _admin(dashboard)
    questions: list[str] = []
    with watched_page(browser, confirms=questions) as page:
        sign_in(page, dashboard.url, ADMIN, PASSWORD)
        page.get_by_role("link", name="Customer login", exact=True).click()
        expect(page.locator("#accounts-state")).to_have_text("off")
        expect(page.locator("#accounts-off")).to_contain_text("OPENCDP_ACCOUNTS_ISSUER")
        page.locator("#client-name").fill("Browser shop")
        page.locator("#client-id").fill(CLIENT_ID)
        page.locator("#client-redirect-uris").fill(
            "https://browser-shop.example/cb\nhttps://browser-shop.example/cb2"
        )
        page.locator("#client-logout-uris").fill("https://browser-shop.example/")
        page.get_by_role("button", name="Register client").click()

        expect(page.locator("#new-client-id")).to_have_text(CLIENT_ID)
        expect(page.locator("#secret-once")).to_contain_text("it is not shown again")
        secret = page.locator("#new-client-secret").inner_text()
        found = clients.get(dashboard.engine, CLIENT_ID)
        assert found is not None and found.check_client_secret(secret)
        row = page.locator(f"#client-row-{CLIENT_ID}")
        expect(row).to_contain_text("Browser shop")
        expect(row).to_contain_text("confidential")
        expect(row).to_contain_text("https://browser-shop.example/cb2")

        page.goto(f"{dashboard.url}/customer-login")  # the listing itself never shows the secret
        expect(page.locator(f"#client-row-{CLIENT_ID}")).to_be_visible()
        assert secret not in page.content()
        page.locator(f"#client-row-{CLIENT_ID}").get_by_role("button", name="Remove").click()
        expect(page.get_by_role("status")).to_contain_text("Client removed")
        expect(page.locator(f"#client-row-{CLIENT_ID}")).to_have_count(0)
        assert questions and questions[0].startswith("Remove the client application Browser shop")
        assert clients.get(dashboard.engine, CLIENT_ID) is None
