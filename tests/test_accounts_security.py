"""The provider's security properties: PKCE for public clients (S256 only), exact redirect URIs,
state and nonce, single-use codes, CSRF on every form, throttled guessing, no user enumeration,
single-use reset links and signing-key rotation. SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from authlib.oauth2.rfc6749.errors import MismatchingStateException
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.errors import InvalidClaimError, JoseError

from opencdp.access.throttle import ADDRESS_FAILURES, MAX_FAILURES
from opencdp.accounts import keys, store
from tests.accounts_helpers import (
    HTTP,
    PASSWORD,
    Party,
    Provider,
    form_token,
    idp,
    login,
    query_of,
    register,
    sign_in_at,
    signed_up,
)

__all__ = ["idp"]


def _authorize(browser: httpx.Client, **params: str) -> httpx.Response:
    return browser.get("/accounts/authorize?" + urlencode(params))


def test_public_clients_must_use_pkce_with_s256(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "pkce@example.com")
    app, _ = idp.client("app", public=True)
    base = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uris[0],
        "scope": "openid",
        "state": "st",
    }
    missing = _authorize(browser, **base)
    assert missing.status_code == 302
    answer = query_of(missing.headers["location"])
    assert answer["error"] == "invalid_request" and answer["state"] == "st"
    assert "code_challenge" in answer["error_description"]
    verifier = "v" * 50
    plain = _authorize(browser, **base, code_challenge=verifier, code_challenge_method="plain")
    assert query_of(plain.headers["location"])["error"] == "invalid_request"
    no_method = _authorize(browser, **base, code_challenge=verifier)
    assert query_of(no_method.headers["location"])["error"] == "invalid_request"
    good = _authorize(
        browser, **base, code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256"
    )
    code = query_of(good.headers["location"])["code"]
    token_url = f"{idp.url}/accounts/token"
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uris[0],
        "client_id": app.client_id,
    }
    wrong = HTTP.post(token_url, data={**exchange, "code_verifier": "w" * 50})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the failed exchange used the code up: the right verifier is too late now
    late = HTTP.post(token_url, data={**exchange, "code_verifier": verifier})
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


def test_redirect_uris_match_exactly_and_codes_are_single_use(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "redirect@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    for near_miss in (
        "https://shop.example/callback/",
        "https://shop.example/callback?x=1",
        "https://shop.example.evil.example/callback",
        "https://SHOP.example/callback",
    ):
        url = shop.authorization_url(redirect_uri=near_miss)
        response = browser.get(url)
        assert response.status_code == 400, near_miss  # an error page here, never a redirect there
        assert "location" not in response.headers
    callback = sign_in_at(shop, browser)
    assert shop.fetch_token(callback)["access_token"]
    code = query_of(callback)["code"]
    again = HTTP.post(
        f"{idp.url}/accounts/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": shop.client.redirect_uris[0],
            "code_verifier": shop.verifier,
        },
        auth=(shop.client.client_id, shop.oauth.client_secret),
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web layer: one engine is enough
def test_state_comes_back_unchanged_and_a_wrong_one_is_refused_by_the_client(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "state@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    callback = sign_in_at(shop, browser, state="opaque/+state value")
    assert query_of(callback)["state"] == "opaque/+state value"
    shop.state = "something else"  # a callback that is not the answer to our request
    with pytest.raises(MismatchingStateException):
        shop.fetch_token(callback)


def test_nonce_is_in_the_id_token_and_cannot_be_replayed_while_a_code_is_open(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "nonce@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    callback = sign_in_at(shop, browser)
    replay = browser.get(
        "/accounts/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": shop.client.client_id,
                "scope": "openid",
                "redirect_uri": shop.client.redirect_uris[0],
                "nonce": shop.nonce,
                "state": "x",
            }
        )
    )
    assert query_of(replay.headers["location"])["error"] == "invalid_request"
    claims = shop.id_token_claims(shop.fetch_token(callback))
    assert claims["nonce"] == shop.nonce
    # a relying party that checks its nonce refuses an ID token made for another request
    token = shop.fetch_token(sign_in_at(shop, browser))
    shop.nonce += "-not-ours"
    with pytest.raises(InvalidClaimError, match="nonce"):
        shop.id_token_claims(token)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web layer: one engine is enough
def test_every_form_needs_its_csrf_token(idp: Provider) -> None:
    browser = idp.browser()
    browser.get("/accounts/login")  # has the double-submit cookie now
    for path, data in (
        ("/accounts/login", {"email": "a@example.com", "password": PASSWORD}),
        ("/accounts/register", {"email": "a@example.com", "password": PASSWORD}),
        ("/accounts/forgot", {"email": "a@example.com"}),
        ("/accounts/reset", {"token": "x", "password": PASSWORD}),
    ):
        assert browser.post(path, data=data).status_code == 403, path
        assert browser.post(path, data={**data, "csrf_token": "guessed"}).status_code == 403, path
    # a right token sent from another site's page is refused too
    token = form_token(browser.get("/accounts/login").text)
    foreign = browser.post(
        "/accounts/login",
        data={"email": "a@example.com", "password": PASSWORD, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    signed_up(idp, browser, "csrf@example.com")
    assert browser.post("/accounts/account", data={"consent": "sms"}).status_code == 403
    assert browser.post("/accounts/account", data={"consent": "sms", "csrf_token": token}).status_code == 403
    page = browser.get("/accounts/account")
    saved = browser.post("/accounts/account", data={"consent": "sms", "csrf_token": form_token(page.text)})
    assert saved.status_code == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web layer: one engine is enough
def test_no_user_enumeration_and_guessing_is_throttled(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "known@example.com")
    guesser = idp.browser()
    unknown = login(guesser, "nobody@example.com", "wrong password here")
    wrong = login(guesser, "known@example.com", "wrong password here")
    assert unknown.status_code == wrong.status_code == 400
    assert unknown.text.replace("nobody@example.com", "X") == wrong.text.replace(
        "known@example.com", "X"
    ).replace(form_token(wrong.text), form_token(unknown.text))
    # the same for "forgot password" and for registering a taken address
    forgot = [guesser.get("/accounts/forgot") for _ in range(2)]
    known = guesser.post(
        "/accounts/forgot", data={"email": "known@example.com", "csrf_token": form_token(forgot[0].text)}
    )
    nobody = guesser.post(
        "/accounts/forgot", data={"email": "nobody@example.com", "csrf_token": form_token(forgot[1].text)}
    )
    assert known.text.replace("known", "X") == nobody.text.replace("nobody", "X")
    taken = register(guesser, "known@example.com")
    fresh = register(guesser, "fresh@example.com")
    assert taken.status_code == fresh.status_code == 200
    assert taken.text.replace("known", "X") == fresh.text.replace("fresh", "X")
    assert idp.mail_link("known@example.com", "/accounts/reset")  # the owner got the reset link

    # guessing many accounts from one address: after ADDRESS_FAILURES failures even the right
    # password waits, for every account (two failures above already count)
    for n in range(ADDRESS_FAILURES - 2):
        assert login(guesser, f"guess{n}@example.com", "another wrong one").status_code == 400
    blocked = login(guesser, "known@example.com", PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in blocked.text
    assert login(guesser, "fresh@example.com", PASSWORD).status_code == 429
    # and per account: guesses spread over many addresses lock the account after MAX_FAILURES (not
    # its owner's other addresses: the count is per account *or* per address)
    throttle = idp.app.state.accounts.throttle
    assert throttle.retry_after("10.0.0.9", "known@example.com") == 0  # 1 failure so far
    for n in range(MAX_FAILURES - 1):
        throttle.failed(f"10.0.1.{n}", "known@example.com")  # from other machines
    assert throttle.retry_after("10.0.0.9", "known@example.com") > 0


def test_reset_link_works_once_and_ends_sessions(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "reset@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    token = shop.fetch_token(sign_in_at(shop, browser))
    forgot = browser.get("/accounts/forgot")
    browser.post(
        "/accounts/forgot", data={"email": "reset@example.com", "csrf_token": form_token(forgot.text)}
    )
    link = idp.mail_link("reset@example.com", "/accounts/reset")
    page = browser.get(link)
    assert page.status_code == 200
    weak = browser.post(
        "/accounts/reset",
        data={
            "token": query_of(link)["token"],
            "password": "Password123!",
            "csrf_token": form_token(page.text),
        },
    )
    assert weak.status_code == 400 and "most common" in weak.text
    done = browser.post(
        "/accounts/reset",
        data={
            "token": query_of(link)["token"],
            "password": "a new and long phrase",
            "csrf_token": form_token(page.text),
        },
    )
    assert done.status_code == 200
    assert shop.userinfo(token["access_token"]).status_code == 401  # whoever knew the old one is out
    assert browser.get(link).status_code == 400  # used
    assert login(idp.browser(), "reset@example.com", "a new and long phrase").status_code == 303
    account = store.find(idp.cdp.engine, email="reset@example.com")
    assert account is not None


def test_key_rotation_old_tokens_verify_new_tokens_use_the_new_key(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "keys@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    old = shop.fetch_token(sign_in_at(shop, browser))
    old_kid = shop.id_token_claims(old)["_kid"]
    new_kid = keys.rotate(idp.cdp.engine, idp.cdp.settings)
    idp.app.state.accounts.keys.invalidate()  # other processes pick it up within seconds
    jwks_kids = {k["kid"] for k in HTTP.get(f"{idp.url}/accounts/jwks.json").json()["keys"]}
    assert jwks_kids == {old_kid, new_kid}
    assert shop.id_token_claims(old)["_kid"] == old_kid  # still verifies
    new = shop.fetch_token(sign_in_at(shop, browser))
    assert shop.id_token_claims(new)["_kid"] == new_kid
    with pytest.raises(keys.SigningKeyError):
        keys.retire(idp.cdp.engine, new_kid)
    keys.retire(idp.cdp.engine, old_kid)
    idp.app.state.accounts.keys.invalidate()
    with pytest.raises(JoseError):
        shop.id_token_claims(old)  # retired: no longer in the JWKS
