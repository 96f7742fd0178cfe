"""In headless Chromium: a customer registers on the hosted page (a name, one opt-in of the
project's purposes), confirms the address from the e-mail a real SMTP server received, signs in,
and the account page shows the consent — while the profile built from the account's events has
the traits and the consent. Strict CSP, no script errors (watched_page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from opencdp.accounts import store
from opencdp.system import OpenCDP
from tests.accounts_helpers import PASSWORD, Provider, running_provider
from tests.ui.browser_env import watched_page


@pytest.fixture
def idp(cdp: OpenCDP) -> Iterator[Provider]:
    with running_provider(cdp) as provider:
        yield provider


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_register_confirm_sign_in_and_the_profile_has_traits_and_consent(idp: Provider, browser: Any) -> None:
    with watched_page(browser) as page:
        page.goto(idp.url + "/accounts/register")
        page.get_by_label("E-mail address").fill("lin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Name (optional)").fill("Lin Chen")
        page.get_by_label("Marketing e-mails and newsletters").check()
        assert not page.get_by_label("Marketing text messages").is_checked()  # opt-in: nothing ticked
        page.get_by_role("button", name="Create an account").click()
        page.get_by_text("Check your e-mail").wait_for()

        page.goto(idp.mail_link("lin@example.com", "/accounts/verify"))
        page.get_by_text("Your e-mail address is confirmed").wait_for()

        page.goto(idp.url + "/accounts/login")
        page.get_by_label("E-mail address").fill("lin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(idp.url + "/accounts/account")
        account = store.find(idp.cdp.engine, email="lin@example.com")
        assert account is not None
        profile = idp.profile(
            account.id, lambda p: p["consent"].get("email_marketing") is True and "email" in p["traits"]
        )
        assert profile["traits"]["name"] == "Lin Chen" and profile["traits"]["email"] == "lin@example.com"
        assert profile["consent"]["sms"] is False

        page.reload()  # the account page reads the consent from the profile
        assert page.get_by_label("Marketing e-mails and newsletters").is_checked()
        page.get_by_label("Marketing text messages").check()
        page.get_by_role("button", name="Save").click()
        page.get_by_text("Saved.").wait_for()
        idp.profile(account.id, lambda p: p["consent"].get("sms") is True)

        page.get_by_role("button", name="Sign out").click()
        page.get_by_text("You are signed out.").wait_for()
