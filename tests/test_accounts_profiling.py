"""Progressive profiling, on SQLite and PostgreSQL: each sign-in asks the next question of the
brand's list that the profile has no answer to; a question can be skipped; answers become traits
through an identify from the accounts source, like registration's."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
import sqlalchemy as sa

from opencdp.accounts import store
from opencdp.accounts.events import SOURCE
from opencdp.store.schema import events, sources
from opencdp.system import OpenCDP
from tests.accounts_helpers import HTTP, Provider, form_token, login, register, running_provider


@pytest.fixture
def asking(cdp: OpenCDP) -> Iterator[Provider]:
    with running_provider(cdp, ask=("first_name", "country", "birthday")) as provider:
        yield provider


def _asked(idp: Provider, email: str) -> tuple[httpx.Client, httpx.Response]:
    """Sign in in a fresh browser; the page the sign-in leads to."""
    browser = idp.browser()
    response = login(browser, email)
    assert response.status_code == 303
    return browser, browser.get(response.headers["location"])


def _post(browser: httpx.Client, page: httpx.Response, **data: str) -> httpx.Response:
    question = page.text.split('name="question" value="')[1].split('"')[0]
    return browser.post(
        "/accounts/more",
        data={"csrf_token": form_token(page.text), "next": "/accounts/account", "question": question, **data},
    )


def test_one_question_per_sign_in_skippable_answers_become_traits(asking: Provider) -> None:
    idp = asking
    browser = idp.browser()
    register(browser, "ada@example.com", consent=("email_marketing",))
    browser.get(idp.mail_link("ada@example.com", "/accounts/verify"))
    account = store.find(idp.cdp.engine, email="ada@example.com")
    assert account is not None

    first = login(browser, "ada@example.com")
    assert (
        first.status_code == 303
        and unquote(first.headers["location"]) == "/accounts/more?next=/accounts/account"
    )
    page = browser.get(first.headers["location"])
    assert page.status_code == 200 and "What is your first name?" in page.text
    assert "greet you by name" in page.text  # it says why
    assert browser.get("/accounts/account").status_code == 200  # the session is there: the page is optional
    empty = _post(browser, page, answer=" ", action="save")
    assert empty.status_code == 400 and "Enter an answer" in empty.text
    saved = _post(browser, page, answer="  Ada ", action="save")
    assert saved.status_code == 303 and saved.headers["location"] == "/accounts/account"
    profile = idp.profile(account.id, lambda p: p["traits"].get("first_name") == "Ada")
    with idp.cdp.engine.connect() as conn:
        identifies = conn.execute(
            sa.select(events.c.payload)
            .join(sources, sources.c.id == events.c.source_id)
            .where(events.c.user_id == account.id, events.c.type == "identify", sources.c.name == SOURCE)
        ).all()
    assert {"first_name": "Ada"} in [r.payload.get("traits") for r in identifies]

    # the next sign-in asks the next question; skipping it goes on and is remembered
    second, page = _asked(idp, "ada@example.com")
    assert "Which country do you live in?" in page.text and "What is your first name?" not in page.text
    skipped = _post(second, page, answer="", action="skip")
    assert skipped.status_code == 303 and skipped.headers["location"] == "/accounts/account"

    third, page = _asked(idp, "ada@example.com")
    assert "When is your birthday?" in page.text and 'type="date"' in page.text
    assert _post(third, page, answer="21.04.1990", action="save").status_code == 400
    assert _post(third, page, answer="2999-01-01", action="save").status_code == 400
    assert _post(third, page, answer="1990-04-21", action="save").status_code == 303
    profile = idp.profile(account.id, lambda p: p["traits"].get("birthday") == "1990-04-21")
    assert "country" not in profile["traits"] and profile["traits"]["first_name"] == "Ada"

    # nothing left to ask (the skipped country waits its days): straight on
    done = login(idp.browser(), "ada@example.com")
    assert done.headers["location"] == "/accounts/account"


def test_a_trait_the_profile_has_from_elsewhere_is_not_asked(cdp: OpenCDP, write_key: str) -> None:
    with running_provider(cdp, ask=("first_name",)) as idp:
        browser = idp.browser()
        register(browser, "grace@example.com")
        browser.get(idp.mail_link("grace@example.com", "/accounts/verify"))
        account = store.find(idp.cdp.engine, email="grace@example.com")
        assert account is not None
        shop = HTTP.post(  # the shop's checkout knew her first name
            f"{idp.url}/v1/identify",
            json={"userId": account.id, "traits": {"first_name": "Grace"}},
            auth=(write_key, ""),
        )
        assert shop.status_code == 200
        idp.profile(account.id, lambda p: p["traits"].get("first_name") == "Grace")
        assert login(browser, "grace@example.com").headers["location"] == "/accounts/account"
