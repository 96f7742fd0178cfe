"""Single sign-on across two relying parties (a confidential shop and a public help-desk app) and
RP-initiated logout that ends the session for both, on SQLite and PostgreSQL."""

from __future__ import annotations

from opencdp.accounts import store
from tests.accounts_helpers import Party, Provider, idp, query_of, sign_in_at, signed_up

__all__ = ["idp"]


def test_second_client_gets_a_code_without_a_prompt_and_logout_ends_both(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "sso@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    desk = Party.of(idp, *idp.client("helpdesk", public=True))

    shop_token = shop.fetch_token(sign_in_at(shop, browser))
    # the help desk: one redirect and back with a code, no sign-in form on the way
    desk_token = desk.fetch_token(sign_in_at(desk, browser))
    shop_claims, desk_claims = shop.id_token_claims(shop_token), desk.id_token_claims(desk_token)
    account = store.find(idp.cdp.engine, email="sso@example.com")
    assert account is not None
    assert shop_claims["sub"] == desk_claims["sub"] == account.id
    assert shop_claims["sid"] == desk_claims["sid"]  # one session
    assert shop_claims["aud"] == shop.client.client_id and desk_claims["aud"] == desk.client.client_id

    # the help desk signs the customer out (RP-initiated logout with its ID token)
    out = browser.get(
        "/accounts/logout",
        params={
            "id_token_hint": desk_token["id_token"],
            "post_logout_redirect_uri": "https://helpdesk.example/bye",
            "state": "s-123",
        },
    )
    assert out.status_code == 302 and out.headers["location"] == "https://helpdesk.example/bye?state=s-123"
    # …which ends it everywhere: both parties' tokens are dead, and both must sign in again
    assert shop.userinfo(shop_token["access_token"]).status_code == 401
    assert desk.userinfo(desk_token["access_token"]).status_code == 401
    for party in (shop, desk):
        again = browser.get(party.authorization_url())
        assert again.status_code == 303 and again.headers["location"].startswith("/accounts/login?")
    # prompt=none now answers login_required at the client instead of showing a form
    silent = browser.get(shop.authorization_url(prompt="none"))
    assert silent.status_code == 302 and query_of(silent.headers["location"])["error"] == "login_required"


def test_logout_without_an_id_token_is_confirmed_by_a_form(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "confirm@example.com")
    shop = Party.of(idp, *idp.client("shop"))
    token = shop.fetch_token(sign_in_at(shop, browser))
    # a link from anywhere cannot sign the customer out: it shows a confirmation form
    page = browser.get("/accounts/logout", params={"client_id": shop.client.client_id})
    assert page.status_code == 200 and 'action="/accounts/logout"' in page.text
    assert shop.userinfo(token["access_token"]).status_code == 200
    forged = browser.post("/accounts/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert shop.userinfo(token["access_token"]).status_code == 200
    from tests.accounts_helpers import form_token

    done = browser.post(
        "/accounts/logout",
        data={
            "csrf_token": form_token(page.text),
            "client_id": shop.client.client_id,
            "post_logout_redirect_uri": "https://shop.example/bye",
        },
    )
    assert done.status_code == 302 and done.headers["location"] == "https://shop.example/bye"
    assert shop.userinfo(token["access_token"]).status_code == 401
    assert browser.get("/accounts/account").status_code == 303  # signed out
