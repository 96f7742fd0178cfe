"""Social login as a relying party (accounts/social.py) against a real OpenID Provider: the npm
package oidc-provider run with Node (tests/social_provider.mjs), started once for the module.

The provider's signing key is made by the test, so besides the tokens the provider issues, a test
can sign a token *as the provider* with a wrong issuer or an old expiry, which is what a
multi-tenant provider's shared keys make possible in the wild.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from opencdp.accounts.social import (
    BadSignature,
    BadState,
    Discovery,
    NonceMismatch,
    PendingLogin,
    ProviderRefused,
    ProviderUnreachable,
    RelyingParty,
    SocialIdentity,
    SocialProvider,
    TokenExpired,
    UnknownKeyId,
    WrongAudience,
    WrongIssuer,
    preset,
)
from opencdp.accounts.social_claims import is_verified, linkable_email, shared_claims, to_traits
from opencdp.identity.identifiers import Identifier, IdentityRules
from tests.serverproc import free_port
from tests.social_provider import (
    ALICE,
    ALICE_SUB,
    CLIENT_ID,
    CLIENT_SECRET,
    MALLORY,
    MALLORY_SUB,
    OpenIdProvider,
    op,
    sign_in_at_provider,
)

pytestmark = pytest.mark.xdist_group("social-provider")  # one provider process (the `op` fixture)
__all__ = ["op"]

ALL_SCOPES = ("openid", "email", "profile", "phone")


def provider(op: OpenIdProvider, **overrides: Any) -> SocialProvider:
    settings: dict[str, Any] = {
        "name": "testnet",
        "issuer": op.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ALL_SCOPES,
        "trusted_for_email": True,
        "trusted_for_phone": True,
    }
    return SocialProvider(**{**settings, **overrides})


def sign_in(
    op: OpenIdProvider, account: tuple[str, str], share: tuple[str, ...] | None = None, **overrides: Any
) -> SocialIdentity:
    async def flow() -> SocialIdentity:
        rp = RelyingParty(provider(op, **overrides))
        url, pending = await rp.begin(op.redirect_uri)
        callback = await sign_in_at_provider(url, op.redirect_uri, account, share)
        return await rp.complete(pending, callback)

    return asyncio.run(flow())


def sign_as_provider(op: OpenIdProvider, key: RSAKey | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": op.issuer,
        "aud": CLIENT_ID,
        "sub": ALICE_SUB,
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
    }
    payload.update(claims)
    signer = key or op.signing_key
    return jwt.encode({"alg": "RS256", "kid": signer.kid}, payload, signer)


def validate(
    op: OpenIdProvider, token: str, nonce: str = "n-1", now: float | None = None, **overrides: Any
) -> Any:
    rp = RelyingParty(provider(op, **overrides), Discovery(refresh_interval=0))
    return asyncio.run(rp.validate_id_token(token, nonce, now=now))


# -- discovery and keys ------------------------------------------------------------------------------
def test_discovery_and_jwks_come_from_the_provider_and_are_cached(op: OpenIdProvider) -> None:
    discovery = Discovery()
    p = provider(op)

    async def fetch() -> tuple[Any, Any, Any, Any]:
        meta, keys = await discovery.metadata(p), await discovery.keys(p)
        return meta, keys, await discovery.metadata(p), await discovery.keys(p)

    meta, keys, meta_again, keys_again = asyncio.run(fetch())
    assert meta.issuer == op.issuer
    assert meta.token_endpoint.startswith(op.issuer) and meta.userinfo_endpoint
    assert meta.algorithms == {"RS256"}
    assert [k.kid for k in keys.keys] == ["provider-key-1"]
    assert not keys.keys[0].is_private  # only the public half is published
    assert meta_again is meta and keys_again is keys  # cached, not fetched again


def test_a_discovery_document_naming_another_issuer_is_refused(op: OpenIdProvider) -> None:
    elsewhere = provider(op, issuer=op.issuer.replace("127.0.0.1", "localhost"))
    with pytest.raises(WrongIssuer, match=re.escape(f"names issuer {op.issuer!r}")):
        asyncio.run(Discovery().metadata(elsewhere))


def test_an_unreachable_issuer_is_a_clear_error() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    p = SocialProvider(name="gone", issuer=nobody, client_id="x")
    with pytest.raises(ProviderUnreachable, match=rf"gone: cannot fetch discovery {nobody}/\.well-known"):
        asyncio.run(RelyingParty(p).begin("http://127.0.0.1/callback"))


# -- the flow ----------------------------------------------------------------------------------------
def test_authorization_code_flow_with_pkce_gives_validated_claims(op: OpenIdProvider) -> None:
    async def begin() -> tuple[str, PendingLogin]:
        return await RelyingParty(provider(op)).begin(op.redirect_uri)

    url, pending = asyncio.run(begin())
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["code_challenge"] != pending.code_verifier
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert query["scope"] == "openid email profile phone" and query["response_type"] == "code"
    assert PendingLogin.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending

    login = sign_in(op, ALICE)
    assert login.subject == ALICE_SUB
    assert login.identifier == ("social:testnet", ALICE_SUB)
    assert login.granted_scopes == set(ALL_SCOPES)
    assert login.id_token_claims["iss"] == op.issuer and login.id_token_claims["aud"] == CLIENT_ID
    # oidc-provider keeps the ID token to `sub` for the code flow; the rest came from userinfo
    assert "email" not in login.id_token_claims
    assert login.claims["email"] == "alice@example.com" and login.email_verified is True
    assert login.traits == {
        "name": "Alice Liddell",
        "first_name": "Alice",
        "last_name": "Liddell",
        "locale": "en-GB",
        "avatar": "https://social.example/alice.png",
        "email": "alice@example.com",
        "phone": "+44 20 7946 0018",
    }


def test_only_the_scopes_the_customer_granted_become_traits(op: OpenIdProvider) -> None:
    login = sign_in(op, ALICE, share=("openid", "email"))  # asked for profile and phone too, refused
    assert login.granted_scopes == {"openid", "email"}
    assert set(login.claims) == {"sub", "email", "email_verified"}
    assert login.traits == {"email": "alice@example.com"}

    login = sign_in(op, ALICE, share=("openid", "profile"))
    assert "email" not in login.claims and login.email_verified is False
    assert login.linkable_email() is None
    assert set(login.traits) == {"name", "first_name", "last_name", "locale", "avatar"}


def test_the_callback_can_come_as_a_posted_form(op: OpenIdProvider) -> None:
    """response_mode=form_post, which Apple requires: the same checks on the form's fields."""

    async def flow() -> SocialIdentity:
        rp = RelyingParty(provider(op, response_mode="form_post"))
        url, pending = await rp.begin(op.redirect_uri)
        assert parse_qs(urlsplit(url).query)["response_mode"] == ["form_post"]
        callback = await sign_in_at_provider(url, op.redirect_uri, ALICE, form_post=True)
        return await rp.complete(pending, callback)

    login = asyncio.run(flow())
    assert login.subject == ALICE_SUB and login.linkable_email() == "alice@example.com"


def test_shared_claims_drop_what_no_granted_scope_asks_for() -> None:
    claims = {
        "sub": "s",
        "email": "a@b.c",
        "email_verified": True,
        "hd": "corp.example",
        "name": "A",
        "tid": "t",
    }
    assert shared_claims(claims, {"openid", "email"}) == {
        "sub": "s",
        "email": "a@b.c",
        "email_verified": True,
    }
    assert shared_claims(claims, {"openid"}) == {"sub": "s"}


def test_the_subject_becomes_an_identifier_that_identity_resolution_extracts(op: OpenIdProvider) -> None:
    found = IdentityRules().extract(sign_in(op, ALICE).identify_message("account-1"))
    assert set(found) == {
        Identifier("user_id", "account-1"),
        Identifier("social:testnet", ALICE_SUB),
        Identifier("email", "alice@example.com"),
        Identifier("phone", "+442079460018"),
    }


def test_a_forged_unverified_email_never_reaches_identity_resolution(op: OpenIdProvider) -> None:
    login = sign_in(op, MALLORY)  # claims alice@example.com with email_verified false
    assert login.subject == MALLORY_SUB
    assert login.claims["email"] == "alice@example.com" and login.email_verified is False
    assert login.linkable_email() is None
    assert "email" not in login.traits
    found = IdentityRules().extract(login.identify_message("account-2"))
    assert set(found) == {Identifier("user_id", "account-2"), Identifier("social:testnet", MALLORY_SUB)}


def test_an_untrusted_provider_never_links_even_a_verified_email(op: OpenIdProvider) -> None:
    login = sign_in(op, ALICE, trusted_for_email=False, trusted_for_phone=False)
    assert login.email_verified is True
    assert login.linkable_email() is None
    assert "email" not in login.traits and "phone" not in login.traits


@pytest.mark.parametrize(
    ("trusted", "claims", "links"),
    [
        (True, {"email": "Ann@Example.com", "email_verified": True}, "ann@example.com"),
        (True, {"email": "ann@example.com", "email_verified": "true"}, "ann@example.com"),  # Apple's string
        (True, {"email": "ann@example.com", "email_verified": False}, None),
        (True, {"email": "ann@example.com", "email_verified": "false"}, None),
        (True, {"email": "ann@example.com", "email_verified": 1}, None),
        (True, {"email": "ann@example.com"}, None),  # no flag: unverified
        (True, {"email": "not-an-address", "email_verified": True}, None),
        (True, {"email_verified": True}, None),
        (False, {"email": "ann@example.com", "email_verified": True}, None),
    ],
)
def test_the_linking_rule(trusted: bool, claims: dict[str, Any], links: str | None) -> None:
    p = SocialProvider(name="x", issuer="https://x.example", client_id="c", trusted_for_email=trusted)
    assert linkable_email(p, claims) == links
    assert ("email" in to_traits(p, claims)) is (links is not None)


@pytest.mark.parametrize(
    ("flag", "verified"),
    [(True, True), ("true", True), (1, False), ("yes", False), (False, False), (None, False)],
)
def test_only_true_means_verified(flag: Any, verified: bool) -> None:
    assert is_verified({"email_verified": flag}) is verified
    login = SocialIdentity(
        provider=SocialProvider(name="x", issuer="https://x.example", client_id="c", trusted_for_email=True),
        subject="s",
        claims={"email": "a@b.example", "email_verified": flag},
        granted_scopes=frozenset({"openid", "email"}),
        id_token_claims={},
        id_token="",
    )
    assert login.email_verified is verified
    assert (login.linkable_email() == "a@b.example") is verified


def test_a_wrong_pkce_verifier_is_refused_by_the_provider(op: OpenIdProvider) -> None:
    async def flow() -> None:
        rp = RelyingParty(provider(op))
        url, pending = await rp.begin(op.redirect_uri)
        callback = await sign_in_at_provider(url, op.redirect_uri, ALICE)
        forged = PendingLogin(**{**pending.__dict__, "code_verifier": "x" * 64})
        await rp.complete(forged, callback)

    with pytest.raises(ProviderRefused, match="refused the code: invalid_grant"):
        asyncio.run(flow())


def test_a_bad_state_or_a_mixed_up_issuer_stops_the_callback_before_the_code_is_used(
    op: OpenIdProvider,
) -> None:
    async def flow(change: dict[str, str]) -> None:
        rp = RelyingParty(provider(op))
        url, pending = await rp.begin(op.redirect_uri)
        callback = await sign_in_at_provider(url, op.redirect_uri, ALICE)
        await rp.complete(pending, {**callback, **change})

    with pytest.raises(BadState, match="bad state"):
        asyncio.run(flow({"state": "somebody-elses-state"}))
    with pytest.raises(WrongIssuer, match=re.escape("callback names issuer 'https://evil.example'")):
        asyncio.run(flow({"iss": "https://evil.example"}))


def test_a_declined_consent_is_reported(op: OpenIdProvider) -> None:
    async def flow() -> None:
        rp = RelyingParty(provider(op))
        _url, pending = await rp.begin(op.redirect_uri)
        await rp.complete(
            pending, {"error": "access_denied", "error_description": "declined", "state": pending.state}
        )

    with pytest.raises(ProviderRefused, match="'access_denied': declined"):
        asyncio.run(flow())


# -- ID token validation -----------------------------------------------------------------------------
def test_a_tampered_id_token_fails_its_signature(op: OpenIdProvider) -> None:
    login = sign_in(op, MALLORY)
    header, payload, signature = login.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = ALICE_SUB  # become Alice
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignature, match="signature does not verify with key 'provider-key-1'"):
        validate(op, f"{header}.{forged}.{signature}", nonce=claims["nonce"])


def test_the_provider_issued_token_answers_only_its_own_nonce_audience_and_time(op: OpenIdProvider) -> None:
    login = sign_in(op, ALICE)
    nonce, exp = login.id_token_claims["nonce"], login.id_token_claims["exp"]
    assert validate(op, login.id_token, nonce=nonce)["sub"] == ALICE_SUB
    with pytest.raises(NonceMismatch, match="nonce mismatch"):
        validate(op, login.id_token, nonce="another-sign-in")
    with pytest.raises(
        WrongAudience, match="wrong audience: the ID token is for 'opencdp-shop', not 'other-app'"
    ):
        validate(op, login.id_token, nonce=nonce, client_id="other-app")
    with pytest.raises(TokenExpired, match="expired 61 s ago"):
        validate(op, login.id_token, nonce=nonce, now=exp + 61)
    assert validate(op, login.id_token, nonce=nonce, now=exp + 59)  # within the allowed clock skew


def test_a_token_signed_by_the_provider_for_another_issuer_or_long_ago_is_refused(op: OpenIdProvider) -> None:
    with pytest.raises(
        WrongIssuer, match=re.escape("wrong issuer: the ID token names 'https://other-tenant.example'")
    ):
        validate(op, sign_as_provider(op, iss="https://other-tenant.example"))
    long_ago = int(time.time()) - 7200
    with pytest.raises(TokenExpired, match="expired"):
        validate(op, sign_as_provider(op, iat=long_ago, exp=long_ago + 300))
    with pytest.raises(WrongAudience, match="several audiences"):
        validate(op, sign_as_provider(op, aud=[CLIENT_ID, "other-app"]))
    assert validate(op, sign_as_provider(op, aud=[CLIENT_ID, "other-app"], azp=CLIENT_ID))["sub"] == ALICE_SUB


def test_an_unknown_key_id_refetches_the_keys_once_then_fails(op: OpenIdProvider) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-the-providers"})
    discovery = Discovery(refresh_interval=0)
    rp = RelyingParty(provider(op), discovery)

    async def check() -> None:
        await discovery.keys(rp.provider)
        fetched = discovery._keys[f"{op.issuer}/jwks"][0]
        with pytest.raises(UnknownKeyId, match="unknown key id 'not-the-providers'"):
            await rp.validate_id_token(sign_as_provider(op, stranger), "n-1")
        assert discovery._keys[f"{op.issuer}/jwks"][0] > fetched  # looked again: key rotation

    asyncio.run(check())


def test_symmetric_and_unsigned_tokens_are_refused(op: OpenIdProvider) -> None:
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "aud": CLIENT_ID,
        "sub": ALICE_SUB,
        "iat": now,
        "exp": now + 60,
        "nonce": "n-1",
    }
    hs256 = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET.encode()))
    with pytest.raises(BadSignature, match="signed with 'HS256', expected one of \\['RS256'\\]"):
        validate(op, hs256)
    unsigned = f"{_b64({'alg': 'none'})}.{_b64(claims)}."
    with pytest.raises(BadSignature, match="'none'"):
        validate(op, unsigned)


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# -- configuration -----------------------------------------------------------------------------------
def test_presets_name_the_published_issuers() -> None:
    google = preset("google", "id", "secret")
    assert (google.issuer, google.source, google.trusted_for_email) == (
        "https://accounts.google.com",
        "social:google",
        True,
    )
    assert google.discovery == "https://accounts.google.com/.well-known/openid-configuration"
    assert preset("facebook", "id").discovery.endswith("/openid-configuration/")
    ms = preset("microsoft", "id", "s", tenant="consumers")
    assert ms.issuer == "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    assert ms.trusted_for_email is False
    apple = preset("apple", "id", "signed-client-secret")
    assert (apple.issuer, apple.response_mode) == ("https://appleid.apple.com", "form_post")
    with pytest.raises(ValueError, match="needs tenant="):
        preset("microsoft", "id", tenant="common")
    with pytest.raises(ValueError, match="no social login preset 'myspace'"):
        preset("myspace", "id")
    with pytest.raises(ValueError, match="must use https"):
        SocialProvider(name="plain", issuer="http://idp.example", client_id="c")
    with pytest.raises(ValueError, match="must include 'openid'"):
        SocialProvider(name="x", issuer="https://idp.example", client_id="c", scopes=("email",))
