"""The whole way of a customer, on SQLite and PostgreSQL: register (with a name and one consent),
the verification e-mail through a real SMTP server, verify, sign in, the authorization code flow
with PKCE driven by Authlib's OAuth2Client, the ID token checked against the JWKS, userinfo from
the profile, refresh with rotation — and the events it all left in the log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from opencdp.accounts import store
from opencdp.privacy.erasure import erase_person
from opencdp.store.schema import events
from tests.accounts_helpers import HTTP, Party, Provider, idp, login, query_of, register, signed_up

__all__ = ["idp"]


def _events_of(provider: Provider, account_id: str) -> list[str]:
    with provider.cdp.engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.type, events.c.payload)
            .where(events.c.user_id == account_id)
            .order_by(events.c.id)
        )
        return [r.payload.get("event") or r.type for r in rows]


def test_register_verify_sign_in_code_flow_userinfo_refresh(idp: Provider) -> None:
    browser = idp.browser()
    response = register(browser, "Ada@Example.com", name="Ada Lovelace", consent=("email_marketing",))
    assert response.status_code == 200 and "ada@example.com" in response.text
    account = store.find(idp.cdp.engine, email="ada@example.com")
    assert account is not None and account.id.startswith("acct_") and not account.verified

    # not verified yet: the password is right, but no session until the mail's link is followed
    refused = login(browser, "ada@example.com")
    assert refused.status_code == 403 and "confirm your e-mail" in refused.text
    link = idp.mail_link("ada@example.com", "/accounts/verify")
    assert browser.get(link).status_code == 200
    assert store.find(idp.cdp.engine, email="ada@example.com").verified  # type: ignore[union-attr]

    client, secret = idp.client("shop")
    party = Party.of(idp, client, secret)
    # the relying party sends the browser to the provider, which asks for a sign-in first
    first = browser.get(party.authorization_url())
    assert first.status_code == 303 and first.headers["location"].startswith("/accounts/login?next=")
    signed_in = login(browser, "ada@example.com", next_url=query_of(first.headers["location"])["next"])
    assert signed_in.status_code == 303
    back = browser.get(signed_in.headers["location"])
    assert back.status_code == 302
    callback = back.headers["location"]
    assert (
        callback.startswith("https://shop.example/callback?") and query_of(callback)["state"] == party.state
    )

    token = party.fetch_token(callback)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"] and token["id_token"]
    claims = party.id_token_claims(token)
    assert claims["sub"] == account.id
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is True
    assert claims["sid"] and claims["auth_time"] <= claims["iat"]

    # userinfo reads the profile that the account's events built: the name came as a trait
    idp.profile(account.id, lambda p: p["traits"].get("name") == "Ada Lovelace")
    info = party.userinfo(token["access_token"]).json()
    assert info["sub"] == account.id and info["name"] == "Ada Lovelace" and info["email"] == "ada@example.com"

    # refresh rotates: the new pair works, the used refresh token does not work twice
    fresh = party.oauth.refresh_token(f"{idp.url}/accounts/token", refresh_token=token["refresh_token"])
    assert fresh["access_token"] != token["access_token"] and fresh["refresh_token"] != token["refresh_token"]
    assert party.userinfo(fresh["access_token"]).status_code == 200
    replay = HTTP.post(
        f"{idp.url}/accounts/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(client.client_id, secret or ""),
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # …and a replayed refresh token revokes what was issued from it
    assert party.userinfo(fresh["access_token"]).status_code == 401

    # everything became events of the account's user id, and the profile has the consent and the
    # verified e-mail (so identity resolution can link the account to what the brand knew)
    assert _events_of(idp, account.id)[:3] == ["identify", "Signed Up", "Consent Updated"]
    assert {"Signed In", "identify"} <= set(_events_of(idp, account.id))
    profile = idp.profile(account.id, lambda p: p["traits"].get("email") == "ada@example.com")
    assert profile["consent"].get("email_marketing") is True
    assert profile["consent"].get("sms") is False


def test_the_verified_email_links_the_account_to_the_profile_the_brand_knew(
    idp: Provider, write_key: str
) -> None:
    """A profile made by the shop's own tracking (same e-mail) becomes the account's profile, but
    only after the address is verified."""
    shop = HTTP.post(
        f"{idp.url}/v1/identify",
        json={
            "anonymousId": "visitor-1",
            "traits": {"email": "grace@example.com", "phone": "+4915112345678"},
        },
        auth=(write_key, ""),
    )
    assert shop.status_code == 200
    browser = idp.browser()
    register(browser, "grace@example.com", name="Grace")
    account = store.find(idp.cdp.engine, email="grace@example.com")
    assert account is not None
    before = idp.profile(account.id, lambda p: p["traits"].get("name") == "Grace")
    assert "phone" not in before["traits"]  # not linked by an unverified address
    browser.get(idp.mail_link("grace@example.com", "/accounts/verify"))
    linked = idp.profile(account.id, lambda p: p["traits"].get("phone") == "+4915112345678")
    assert linked["traits"]["name"] == "Grace"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web layer: one engine is enough
def test_accounts_are_off_without_an_issuer(client: object) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    assert client.get("/.well-known/openid-configuration").status_code == 404
    assert client.get("/accounts/register").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the web layer: one engine is enough
def test_discovery_names_every_endpoint(idp: Provider) -> None:
    meta = HTTP.get(idp.url + "/.well-known/openid-configuration").json()
    assert meta["issuer"] == idp.url
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ):
        assert meta[key].startswith(idp.url + "/accounts/")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["scopes_supported"]) == {"openid", "profile", "email", "phone"}
    # a single-page app (public client) on another origin may call token and userinfo
    for path in ("/accounts/token", "/accounts/userinfo"):
        preflight = HTTP.options(idp.url + path, headers={"Origin": "https://spa.example"})
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
    refused = HTTP.post(idp.url + "/accounts/token", data={"grant_type": "authorization_code"})
    assert refused.status_code in (400, 401) and refused.headers["access-control-allow-origin"] == "*"


def test_erasure_removes_the_account_with_the_person(idp: Provider) -> None:
    browser = idp.browser()
    signed_up(idp, browser, "erase@example.com", name="Eve")
    account = store.find(idp.cdp.engine, email="erase@example.com")
    assert account is not None
    idp.profile(account.id, lambda p: p["traits"].get("email") == "erase@example.com")
    erase_person(idp.cdp.engine, idp.cdp.processor.rules, "email", "erase@example.com", "test")
    assert store.find(idp.cdp.engine, account_id=account.id) is None
    assert browser.get("/accounts/account").status_code == 303  # the session went with it
    assert login(idp.browser(), "erase@example.com").status_code == 400
