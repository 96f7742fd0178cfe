"""Social login on the hosted pages against a real OpenID Provider (the npm package oidc-provider,
tests/social_provider.mjs, one process shared with tests/test_social_login.py): sign-up through
it, a second sign-in, linking by a verified and trusted e-mail, never by an unverified one,
linking while signed in, unlinking, and a relying party's authorization request resumed after a
social sign-in. The whole path (pages, cookies, events, processing) runs; only the browser is
httpx. Storage on both engines for the sign-up and the linking by e-mail; the rest on SQLite.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from opencdp.accounts import linking, second_factor, store
from opencdp.accounts.social import SocialProvider
from opencdp.privacy.erasure import erase_person
from opencdp.profiles.reader import get_profile
from opencdp.store.schema import account_logins, events, sources
from opencdp.system import OpenCDP
from opencdp.ui.profile_view import account_links
from tests.accounts_helpers import (
    Party,
    Provider,
    code_at,
    form_token,
    login,
    query_of,
    running_provider,
    signed_up,
)
from tests.serverproc import free_port
from tests.social_provider import (
    ALICE,
    ALICE_SUB,
    MALLORY,
    MALLORY_SUB,
    OpenIdProvider,
    op,
    register_client,
    sign_in_at_provider,
)

pytestmark = pytest.mark.xdist_group("social-provider")  # the provider process of `op`
__all__ = ["op"]
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SCOPES = ("openid", "email", "profile", "phone")


@pytest.fixture
def idp(cdp: OpenCDP, op: OpenIdProvider) -> Iterator[Provider]:
    """The accounts app with three logins at the same provider: `testnet` (trusted for e-mail),
    `untrusted` (not trusted for e-mail) and `posted` (the callback as a posted form, as Apple)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    names = ("testnet", "untrusted", "posted")
    client_id, secret = register_client(op, *(f"{url}/accounts/social/{n}/callback" for n in names))
    common: dict[str, Any] = {
        "issuer": op.issuer,
        "client_id": client_id,
        "client_secret": secret,
        "scopes": SCOPES,
    }
    social = (
        SocialProvider(name="testnet", trusted_for_email=True, trusted_for_phone=True, **common),
        SocialProvider(name="untrusted", **common),
        SocialProvider(name="posted", trusted_for_email=True, response_mode="form_post", **common),
    )
    labels = {"testnet": "Testnet", "untrusted": "Untrusted", "posted": "Posted"}
    with running_provider(cdp, port=port, social=social, social_labels=labels) as provider:
        yield provider


def social(
    idp: Provider,
    browser: httpx.Client,
    who: tuple[str, str],
    name: str = "testnet",
    share: tuple[str, ...] | None = None,
    start: httpx.Response | None = None,
) -> httpx.Response:
    """Press "Continue with <name>" (or follow `start`, the redirect to the provider), sign in
    at the provider as `who`, and bring the provider's answer back to opencdp's callback."""
    start = start or browser.get(f"/accounts/social/{name}/start")
    assert start.status_code == 303, start.text
    callback = f"{idp.url}/accounts/social/{name}/callback"
    if name == "posted":
        fields = asyncio.run(
            sign_in_at_provider(start.headers["location"], callback, who, share, form_post=True)
        )
        back = browser.post(callback, data=fields)  # the provider's auto-submitted form
        assert back.status_code == 303, back.text
        return browser.get(back.headers["location"])
    params = asyncio.run(sign_in_at_provider(start.headers["location"], callback, who, share))
    return browser.get(f"/accounts/social/{name}/callback", params=params)


def logged(idp: Provider, account_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(source, event or type, payload) of the account's events, oldest first."""
    with idp.cdp.engine.connect() as conn:
        rows = conn.execute(
            sa.select(sources.c.name, events.c.type, events.c.event, events.c.payload)
            .join(sources, sources.c.id == events.c.source_id)
            .where(events.c.user_id == account_id)
            .order_by(events.c.id)
        ).all()
    return [(r.name, r.event or r.type, r.payload) for r in rows]


def tracked(idp: Provider, account_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e, p.get("properties", {})) for _s, e, p in logged(idp, account_id) if p["type"] == "track"]


def account_of(idp: Provider, sub: str, name: str = "testnet") -> store.Account:
    login_row = linking.find_login(idp.cdp.engine, name, sub)
    assert login_row is not None, f"no {name} login for {sub}"
    account = store.find(idp.cdp.engine, account_id=login_row.account_id)
    assert account is not None
    return account


def signed_in_as(browser: httpx.Client) -> str:
    """The e-mail shown on the account page ("" for an account without one)."""
    page = browser.get("/accounts/account")
    assert page.status_code == 200, page.headers.get("location")
    found = re.search(r'<p class="who">([^<]*)</p>', page.text)
    assert found, page.text
    return found.group(1)


def test_sign_up_through_the_provider_then_sign_in_again_and_erase(idp: Provider) -> None:
    browser = idp.browser()
    page = browser.get("/accounts/login")
    assert 'href="/accounts/social/testnet/start?next=' in page.text and "Continue with Testnet" in page.text
    # Alice shares her e-mail and profile, not her phone
    done = social(idp, browser, ALICE, share=("openid", "email", "profile"))
    assert done.status_code == 303 and done.headers["location"] == "/accounts/account", done.text
    account = account_of(idp, ALICE_SUB)
    assert account.email == "alice@example.com" and account.verified  # vouched for by a trusted provider
    assert not linking.has_password(idp.cdp.engine, account.id)
    assert signed_in_as(browser) == "alice@example.com"

    history = logged(idp, account.id)
    identify = next(p for s, e, p in history if e == "identify")
    assert [(s, e) for s, e, _p in history] == [
        ("social:testnet", "identify"),
        ("opencdp-accounts", "Signed Up"),
        ("opencdp-accounts", "Signed In"),
    ]
    assert (
        identify["context"]["externalIds"][0] | {"type": "social:testnet", "id": ALICE_SUB}
        == (identify["context"]["externalIds"][0])
    )
    assert all(p["properties"] == {"method": "social:testnet"} for _s, _e, p in history[1:])

    # the claims became traits from the source social:testnet; only the shared scopes' claims
    found = idp.profile(account.id, lambda p: p["traits"].get("name") == "Alice Liddell")
    profile = get_profile(idp.cdp.engine, found["id"])
    assert profile["traits"]["name"]["source"] == "social:testnet"
    assert profile["traits"]["email"]["value"] == "alice@example.com"
    assert profile["traits"]["first_name"]["value"] == "Alice" and "phone" not in profile["traits"]
    assert {"type": "social:testnet", "value": ALICE_SUB} in [
        {"type": i["type"], "value": i["value"]} for i in profile["identifiers"]
    ]

    # a second sign-in (another browser) is the same account: no second sign-up
    again = idp.browser()
    assert social(idp, again, ALICE).status_code == 303
    assert account_of(idp, ALICE_SUB).id == account.id
    assert [e for e, _p in tracked(idp, account.id)] == ["Signed Up", "Signed In", "Signed In"]
    assert store.find(idp.cdp.engine, email="alice@example.com") == account_of(idp, ALICE_SUB)

    # erasure takes the linked login with the account
    erase_person(idp.cdp.engine, idp.cdp.processor.rules, "user_id", account.id, "test")
    with idp.cdp.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(account_logins)).scalar() == 0
    assert store.find(idp.cdp.engine, account_id=account.id) is None
    assert again.get("/accounts/account").status_code == 303  # the session went too


def test_a_verified_trusted_email_links_to_the_verified_password_account(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "alice@example.com", name="Alice")
    password_account = store.find(idp.cdp.engine, email="alice@example.com")
    assert password_account is not None

    other = idp.browser()
    assert social(idp, other, ALICE).status_code == 303
    assert account_of(idp, ALICE_SUB).id == password_account.id  # linked, not a second account
    login_row = linking.find_login(idp.cdp.engine, "testnet", ALICE_SUB)
    assert login_row is not None and login_row.proof == "verified_email"
    assert signed_in_as(other) == "alice@example.com"
    assert ("Account Linked", {"provider": "testnet", "method": "verified_email"}) in tracked(
        idp, password_account.id
    )
    # the profile now has what the provider shared, beside what the account said; the password works
    found = idp.profile(password_account.id, lambda p: p["traits"].get("last_name") == "Liddell")
    assert found["traits"]["email"] == "alice@example.com"
    assert login(idp.browser(), "alice@example.com").status_code == 303
    with idp.cdp.engine.connect() as conn:
        lines = account_links(conn, found["id"])
    assert [line["text"] for line in lines] == ["Account Linked: testnet, proven by a verified e-mail"]


@SQLITE_ONLY
def test_a_social_sign_in_asks_for_the_second_factor_too(idp: Provider) -> None:
    """A linked login is no way around the account's second factor."""
    t0 = 1_800_000_000.0
    idp.app.state.accounts.clock = lambda: t0
    signed_up(idp, idp.browser(), "alice@example.com")
    account = store.find(idp.cdp.engine, email="alice@example.com")
    assert account is not None
    engine, settings = idp.cdp.engine, idp.cdp.settings
    setup = second_factor.begin(engine, settings, account.id, "alice@example.com", "Shop")
    assert second_factor.confirm(engine, settings, account.id, code_at(setup.secret, t0), t0)

    browser = idp.browser()
    back = social(idp, browser, ALICE)
    assert back.status_code == 303 and back.headers["location"] == "/accounts/login/code"
    assert account_of(idp, ALICE_SUB).id == account.id  # linked by the verified e-mail…
    assert browser.get("/accounts/account").status_code == 303  # …but not signed in without the code
    page = browser.get("/accounts/login/code")
    done = browser.post(
        "/accounts/login/code",
        data={"csrf_token": form_token(page.text), "code": code_at(setup.secret, t0 + 30)},
    )
    assert done.status_code == 303 and signed_in_as(browser) == "alice@example.com"
    assert ("Signed In", {"method": "social:testnet", "second_factor": "totp"}) in tracked(idp, account.id)


@SQLITE_ONLY
def test_an_unverified_or_untrusted_email_never_links(idp: Provider) -> None:
    victim = idp.browser()
    signed_up(idp, victim, "alice@example.com", name="The real Alice")
    alice = store.find(idp.cdp.engine, email="alice@example.com")
    assert alice is not None

    # Mallory's provider account claims alice@example.com, unverified: a separate account
    mallory_browser = idp.browser()
    assert social(idp, mallory_browser, MALLORY).status_code == 303
    mallory = account_of(idp, MALLORY_SUB)
    assert mallory.id != alice.id and mallory.email == "" and not mallory.verified
    assert signed_in_as(mallory_browser) == ""
    mallory_profile = idp.profile(mallory.id, lambda p: p["traits"].get("last_name") == "Forger")
    assert "email" not in mallory_profile["traits"]

    # Alice's verified address from a provider not trusted for e-mail does not link either
    untrusted = idp.browser()
    assert social(idp, untrusted, ALICE, name="untrusted").status_code == 303
    stranger = account_of(idp, ALICE_SUB, "untrusted")
    assert stranger.id != alice.id and stranger.email == ""

    # the victim's account and profile are untouched: no login linked, no foreign traits
    assert linking.logins_of(idp.cdp.engine, alice.id) == []
    alice_profile = idp.profile(alice.id, lambda p: p["traits"].get("email") == "alice@example.com")
    assert alice_profile["traits"]["name"] == "The real Alice" and "last_name" not in alice_profile["traits"]
    assert alice_profile["id"] not in {
        idp.profile(mallory.id)["id"],
        idp.profile(stranger.id, lambda p: p["traits"].get("last_name") == "Liddell")["id"],
    }
    assert "Account Linked" not in [e for e, _p in tracked(idp, alice.id)]


@SQLITE_ONLY
def test_an_unverified_password_account_is_not_taken_over_by_a_verified_login(idp: Provider) -> None:
    """Someone registered Alice's address with a password and never confirmed it: Alice's verified
    login must not link to it (the squatter's password would open her account)."""
    from tests.accounts_helpers import register

    assert register(idp.browser(), "alice@example.com").status_code == 200
    squatted = store.find(idp.cdp.engine, email="alice@example.com")
    assert squatted is not None and not squatted.verified
    answer = social(idp, idp.browser(), ALICE)
    assert answer.status_code == 409 and "Sign in to it first" in answer.text
    assert linking.find_login(idp.cdp.engine, "testnet", ALICE_SUB) is None
    assert linking.logins_of(idp.cdp.engine, squatted.id) == []


@SQLITE_ONLY
def test_link_while_signed_in_unlink_and_never_the_last_way(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "carol@example.com")
    carol = store.find(idp.cdp.engine, email="carol@example.com")
    assert carol is not None
    page = browser.get("/accounts/account")
    assert 'action="/accounts/social/testnet/link"' in page.text
    # without the session's CSRF token nothing starts
    assert browser.post("/accounts/social/testnet/link", data={"csrf_token": "forged"}).status_code == 403
    start = browser.post("/accounts/social/testnet/link", data={"csrf_token": form_token(page.text)})
    # Carol's provider account is the one called Mallory there: the session is the proof
    done = social(idp, browser, MALLORY, start=start)
    assert done.status_code == 303 and done.headers["location"] == "/accounts/account"
    assert account_of(idp, MALLORY_SUB).id == carol.id
    assert ("Account Linked", {"provider": "testnet", "method": "session"}) in tracked(idp, carol.id)
    page = browser.get("/accounts/account")
    assert 'id="linked-testnet"' in page.text and 'action="/accounts/social/testnet/unlink"' in page.text

    # signing in with it later is Carol's account
    assert social(idp, idp.browser(), MALLORY).status_code == 303
    assert [e for e, _p in tracked(idp, carol.id)].count("Signed In") == 2

    # the same login cannot be linked to a second account
    signed_up(idp, other := idp.browser(), "dave@example.com")
    taken = social(
        idp,
        other,
        MALLORY,
        start=other.post(
            "/accounts/social/testnet/link",
            data={"csrf_token": form_token(other.get("/accounts/account").text)},
        ),
    )
    assert taken.status_code == 409 and "belongs to another account" in taken.text
    assert account_of(idp, MALLORY_SUB).id == carol.id

    # unlinking: the password stays, so the login may go
    token = form_token(browser.get("/accounts/account").text)
    assert browser.post("/accounts/social/testnet/unlink", data={"csrf_token": token}).status_code == 303
    assert linking.find_login(idp.cdp.engine, "testnet", MALLORY_SUB) is None
    assert ("Account Unlinked", {"provider": "testnet", "linked_by": "session"}) in tracked(idp, carol.id)
    found = idp.profile(carol.id, lambda p: True)
    with idp.cdp.engine.connect() as conn:
        deadline_lines: list[str] = []
        for _ in range(100):
            deadline_lines = [line["text"] for line in account_links(conn, found["id"])]
            if len(deadline_lines) == 2:
                break
            asyncio.run(asyncio.sleep(0.05))
    assert deadline_lines == [
        "Account Linked: testnet, proven by a signed-in session",
        "Account Unlinked: testnet",
    ]

    # an account made by a social login has no password: its only login cannot be unlinked
    alone = idp.browser()
    assert social(idp, alone, ALICE).status_code == 303
    alice = account_of(idp, ALICE_SUB)
    page = alone.get("/accounts/account")
    assert 'id="linked-testnet"' in page.text and "/unlink" not in page.text
    refused = alone.post("/accounts/social/testnet/unlink", data={"csrf_token": form_token(page.text)})
    assert refused.status_code == 409 and "only way to sign in" in refused.text
    assert linking.find_login(idp.cdp.engine, "testnet", ALICE_SUB) is not None
    assert "Account Unlinked" not in [e for e, _p in tracked(idp, alice.id)]


@SQLITE_ONLY
def test_a_relying_party_gets_its_code_after_a_social_sign_in(idp: Provider) -> None:
    client, secret = idp.client("shop")
    party = Party.of(idp, client, secret)
    browser = idp.browser()
    first = browser.get(party.authorization_url())
    assert first.status_code == 303 and first.headers["location"].startswith("/accounts/login?next=")
    login_page = browser.get(first.headers["location"])
    button = re.search(r'href="(/accounts/social/testnet/start\?next=[^"]+)"', login_page.text)
    assert button, login_page.text
    start = browser.get(button.group(1).replace("&amp;", "&"))
    done = social(idp, browser, ALICE, start=start)
    assert done.status_code == 303 and done.headers["location"].startswith("/accounts/authorize?")
    back = browser.get(done.headers["location"])
    assert back.status_code == 302 and query_of(back.headers["location"])["state"] == party.state
    token = party.fetch_token(back.headers["location"])
    claims = party.id_token_claims(token)
    assert claims["sub"] == account_of(idp, ALICE_SUB).id and claims["email"] == "alice@example.com"


@SQLITE_ONLY
def test_form_post_callback_and_the_pending_sign_in_is_bound_to_the_browser(idp: Provider) -> None:
    # response_mode=form_post: the provider posts the answer; it comes back as a GET with the cookie
    browser = idp.browser()
    assert social(idp, browser, ALICE, name="posted").status_code == 303
    assert account_of(idp, ALICE_SUB, "posted").email == "alice@example.com"

    # a callback carried to another browser (no pending sign-in there) signs in nobody
    victim = idp.browser()
    start = victim.get("/accounts/social/testnet/start")
    callback = f"{idp.url}/accounts/social/testnet/callback"
    params = asyncio.run(sign_in_at_provider(start.headers["location"], callback, MALLORY))
    elsewhere = idp.browser()
    refused = elsewhere.get("/accounts/social/testnet/callback", params=params)
    assert refused.status_code == 400 and "another browser" in refused.text
    # …nor with a pending sign-in of its own (another state)
    elsewhere.get("/accounts/social/testnet/start")
    assert elsewhere.get("/accounts/social/testnet/callback", params=params).status_code == 400
    assert linking.find_login(idp.cdp.engine, "testnet", MALLORY_SUB) is None
    # the right browser completes it once; the cookie is gone afterwards
    assert victim.get("/accounts/social/testnet/callback", params=params).status_code == 303
    assert victim.get("/accounts/social/testnet/callback", params=params).status_code == 400
    # unknown providers are refused
    assert idp.browser().get("/accounts/social/nobody/start").status_code == 400


def test_providers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from opencdp.accounts.social_config import social_from_env
    from opencdp.config import ConfigError

    for key, value in {
        "OPENCDP_ACCOUNTS_SOCIAL": "google, acme",
        "OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_CLIENT_ID": "g-id",
        "OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_CLIENT_SECRET": "g-secret",
        "OPENCDP_ACCOUNTS_SOCIAL_ACME_CLIENT_ID": "a-id",
        "OPENCDP_ACCOUNTS_SOCIAL_ACME_ISSUER": "https://id.acme.example/",
        "OPENCDP_ACCOUNTS_SOCIAL_ACME_SCOPES": "openid,email",
        "OPENCDP_ACCOUNTS_SOCIAL_ACME_LABEL": "Acme ID",
    }.items():
        monkeypatch.setenv(key, value)
    (google, acme), labels = social_from_env()
    assert (google.issuer, google.client_secret, google.trusted_for_email) == (
        "https://accounts.google.com",
        "g-secret",
        True,
    )
    assert (acme.issuer, acme.client_secret, acme.scopes, acme.trusted_for_email) == (
        "https://id.acme.example",
        None,
        ("openid", "email"),
        False,
    )
    assert labels == {"google": "Google", "acme": "Acme ID"}
    monkeypatch.setenv("OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_TRUSTED_FOR_EMAIL", "maybe")
    with pytest.raises(ConfigError, match="TRUSTED_FOR_EMAIL must be 1 or 0"):
        social_from_env()
    monkeypatch.setenv("OPENCDP_ACCOUNTS_SOCIAL_GOOGLE_TRUSTED_FOR_EMAIL", "0")
    assert not social_from_env()[0][0].trusted_for_email
    monkeypatch.delenv("OPENCDP_ACCOUNTS_SOCIAL_ACME_ISSUER")
    with pytest.raises(ConfigError, match="ACME_ISSUER"):
        social_from_env()
    monkeypatch.setenv("OPENCDP_ACCOUNTS_SOCIAL", "acme-2")
    with pytest.raises(ConfigError, match="ACME_2_CLIENT_ID"):
        social_from_env()


def test_the_cli_lists_and_checks_the_social_logins(
    op: OpenIdProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from opencdp.cli import main

    monkeypatch.setenv("OPENCDP_ACCOUNTS_ISSUER", "https://login.shop.example")
    monkeypatch.setenv("OPENCDP_ACCOUNTS_SOCIAL", "testnet,gone")
    for name, issuer in (("TESTNET", op.issuer), ("GONE", f"http://127.0.0.1:{free_port()}")):
        monkeypatch.setenv(f"OPENCDP_ACCOUNTS_SOCIAL_{name}_CLIENT_ID", "shop")
        monkeypatch.setenv(f"OPENCDP_ACCOUNTS_SOCIAL_{name}_ISSUER", issuer)
    monkeypatch.setenv("OPENCDP_ACCOUNTS_SOCIAL_TESTNET_TRUSTED_FOR_EMAIL", "1")
    result = CliRunner().invoke(main, ["accounts", "social", "--check"])
    assert result.exit_code == 1, result.output
    testnet, gone = result.output.split("\ngone ")
    assert "trusted for: e-mail" in testnet and "discovery and keys: ok" in testnet
    assert "callback: https://login.shop.example/accounts/social/testnet/callback" in testnet
    assert "trusted for: nothing" in gone and "FAILED" in gone and "cannot fetch discovery" in gone
