"""In headless Chromium: "Continue with Testnet" on the hosted sign-in page → the provider's own
sign-in and consent pages (the real oidc-provider of tests/social_provider.mjs) → back at the
account page, signed in, with the login listed; strict CSP, no script errors (watched_page)."""

from __future__ import annotations

from typing import Any

import pytest

from opencdp.accounts import linking
from tests.accounts_helpers import Provider
from tests.social_provider import ALICE_SUB, op
from tests.test_accounts_social import idp
from tests.ui.browser_env import watched_page

pytestmark = pytest.mark.xdist_group("social-provider")
__all__ = ["idp", "op"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_continue_with_a_provider_and_come_back_signed_in(idp: Provider, browser: Any) -> None:
    with watched_page(browser) as page:
        page.goto(idp.url + "/accounts/login")
        page.get_by_role("link", name="Continue with Testnet").click()
        page.locator("input[name=login]").fill("alice")  # the provider's page
        page.locator("input[name=password]").fill("alice-password")
        page.get_by_role("button", name="continue").click()
        page.get_by_text("Share with").wait_for()  # its consent page: every scope ticked
        page.get_by_role("button", name="continue").click()
        page.wait_for_url(idp.url + "/accounts/account")
        page.get_by_text("alice@example.com").wait_for()
        assert page.locator("#linked-testnet").is_visible()
        login = linking.find_login(idp.cdp.engine, "testnet", ALICE_SUB)
        assert login is not None and login.proof == "signup"
        idp.profile(login.account_id, lambda p: p["traits"].get("name") == "Alice Liddell")
