"""The preference centre for a signed-in customer (`/accounts/preferences`), on SQLite and
PostgreSQL: the same pages as from a link, for the profile of the session's account — consent and
survey answers land on that customer's profile only, and another customer's session sees their
own."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa

from opencdp.accounts import second_factor, store
from opencdp.accounts.survey_store import save_survey
from opencdp.store.schema import account_recovery_codes, account_second_factors
from tests.accounts_helpers import Provider, code_at, idp, signed_up

__all__ = ["idp"]
T0 = 1_800_000_000.0
SURVEY = {
    "name": "style",
    "title": "Your style",
    "questions": [
        {"key": "favourite_colour", "text": "Which colour?", "kind": "single", "options": ["black", "blue"]}
    ],
}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _customer(idp: Provider, email: str) -> tuple[httpx.Client, str]:
    browser = idp.browser()
    signed_up(idp, browser, email)
    account = store.find(idp.cdp.engine, email=email)
    assert account is not None
    idp.profile(account.id)
    return browser, account.id


def test_signed_in_customers_see_and_change_their_own_preferences(idp: Provider) -> None:
    save_survey(idp.cdp.engine, SURVEY, "test")
    ann, ann_id = _customer(idp, "ann@example.com")
    bob, bob_id = _customer(idp, "bob@example.com")
    assert 'href="/accounts/preferences"' in ann.get("/accounts/account").text

    page = ann.get("/accounts/preferences")
    assert page.status_code == 200 and "Your preferences" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert 'href="/accounts/preferences/surveys/style"' in page.text
    forged = ann.post("/accounts/preferences", data={"csrf": "x" * 40, "consent": ["email_marketing"]})
    assert forged.status_code == 403
    saved = ann.post(
        "/accounts/preferences",
        data={"csrf": _csrf(page.text), "consent": ["email_marketing"], "interests": ["news"]},
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/accounts/preferences?saved=1"
    profile = idp.profile(ann_id, lambda p: p["consent"].get("email_marketing") is True)
    assert profile["traits"]["interests"] == ["news"]

    survey = ann.get("/accounts/preferences/surveys/style")
    assert survey.status_code == 200
    answered = ann.post(
        "/accounts/preferences/surveys/style", data={"csrf": _csrf(survey.text), "favourite_colour": "blue"}
    )
    assert answered.status_code == 200 and "Your answers are saved" in answered.text
    idp.profile(ann_id, lambda p: p["traits"].get("favourite_colour") == "blue")

    # Bob's session shows Bob's centre: nothing of Ann's, and his forms carry his own token
    theirs = bob.get("/accounts/preferences")
    assert theirs.status_code == 200 and _csrf(theirs.text) != _csrf(page.text)
    assert 'value="email_marketing" checked' not in theirs.text
    assert bob.post("/accounts/preferences", data={"csrf": _csrf(page.text)}).status_code == 403
    bob_profile = idp.profile(bob_id)
    assert "favourite_colour" not in bob_profile["traits"] and not bob_profile["consent"].get(
        "email_marketing"
    )
    data = bob.get("/accounts/preferences/data")
    assert data.status_code == 200 and "bob@example.com" in data.text and "ann@example.com" not in data.text

    # without a session: to the sign-in, and back here afterwards
    stranger = idp.browser().get("/accounts/preferences")
    assert stranger.status_code == 303
    assert stranger.headers["location"] == "/accounts/login?next=%2Faccounts%2Fpreferences"


def test_erasure_from_the_signed_in_centre_ends_the_account(idp: Provider) -> None:
    browser, account_id = _customer(idp, "cat@example.com")
    engine, settings = idp.cdp.engine, idp.cdp.settings
    setup = second_factor.begin(engine, settings, account_id, "cat@example.com", "Shop")
    assert second_factor.confirm(engine, settings, account_id, code_at(setup.secret, T0), T0)
    page = browser.get("/accounts/preferences/erase")
    assert page.status_code == 200
    erased = browser.post("/accounts/preferences/erase", data={"csrf": _csrf(page.text), "confirm": "erase"})
    assert erased.status_code == 200 and "erased" in erased.text
    assert store.find(idp.cdp.engine, account_id=account_id) is None
    with engine.connect() as conn:  # the second factor went with the account
        for table in (account_second_factors, account_recovery_codes):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
    assert browser.get("/accounts/preferences").status_code == 303  # signed out with it
