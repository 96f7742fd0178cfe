"""Social login: opencdp as an OpenID Connect *relying party* of an external provider (issue 16).

The customer signs in with an account they already have (Google, Microsoft, Apple, any OpenID
provider). The pieces, in the order of a sign-in:

1. `SocialProvider` — issuer, client id and secret, scopes, and whether the provider is trusted
   to vouch for e-mail addresses; `preset()` for the big ones by their published issuers. Their
   discovery documents and keys are fetched at run time (`Discovery`, cached), never copied here.
2. `RelyingParty.begin` — the authorization request with a fresh `state`, `nonce` and PKCE (S256)
   verifier, returned as a `PendingLogin` the caller keeps in the customer's server-side session.
3. `RelyingParty.complete` — checks the callback's `state` (and `iss`, RFC 9207), exchanges the
   code (Authlib's `AsyncOAuth2Client`), validates the ID token (joserfc: the signature against the
   provider's JWKS, `iss`, `aud`/`azp`, `exp`, `nonce`), reads userinfo and keeps **only the claims
   of the scopes the customer granted**.
4. What the CDP gets (`SocialIdentity`): the identifier `social:<provider>` = `sub`, traits with
   source `social:<provider>`, the `email_verified` flag, and `linkable_email()`, the one rule
   deciding whether an external address may link to an existing account.

Every failure is a `SocialLoginError` subclass whose message names the check that failed.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet, import_key

from opencdp.accounts.social_claims import is_verified, linkable_email, shared_claims, to_traits

#: Signature algorithms accepted for ID tokens: asymmetric only, so a token cannot be forged with
#: the client secret (HS256) and never unsigned ("none").
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
PENDING_MAX_AGE = 600  # seconds between the redirect to the provider and the callback
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


# -- errors -----------------------------------------------------------------------------------------
class SocialLoginError(Exception):
    """The social login failed; the message says which check and which provider."""


class ProviderUnreachable(SocialLoginError):
    """The discovery document, the keys, the token or userinfo endpoint could not be fetched."""


class BadDiscovery(SocialLoginError):
    """The discovery document or the JWKS is not usable (missing endpoints, not JSON, no PKCE)."""


class BadState(SocialLoginError):
    """The callback's `state` is missing, differs from the one sent, or the attempt is too old."""


class ProviderRefused(SocialLoginError):
    """The provider answered with an error (the customer declined, the code was refused)."""


class TokenExchangeFailed(SocialLoginError):
    """The token endpoint's answer holds no usable ID token."""


class InvalidIdToken(SocialLoginError):
    """The ID token failed a check; the subclasses name which."""


class BadSignature(InvalidIdToken):
    pass


class UnknownKeyId(InvalidIdToken):
    pass


class WrongIssuer(InvalidIdToken):
    pass


class WrongAudience(InvalidIdToken):
    pass


class TokenExpired(InvalidIdToken):
    pass


class NonceMismatch(InvalidIdToken):
    pass


# -- configuration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SocialProvider:
    """One external provider. `name` is lower case and becomes the identifier type and trait source
    `social:<name>`. `client_secret=None` makes a public client (PKCE alone). `trusted_for_email`
    (and `_for_phone`) say that this provider's `email_verified` can be believed: set it only for
    providers that verify addresses themselves and never let a user assert one."""

    name: str
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    trusted_for_email: bool = False
    trusted_for_phone: bool = False
    discovery_url: str | None = None
    token_auth_method: str = "client_secret_basic"
    response_mode: str | None = None  # "form_post": the callback arrives as a POST form (Apple)
    leeway: int = 60  # seconds of clock skew allowed on exp and iat

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"social provider name {self.name!r}: use a-z, 0-9, - and _ (at most 40)")
        if "openid" not in self.scopes:
            raise ValueError(f"social provider {self.name}: the scopes must include 'openid'")
        for url in (self.issuer, self.discovery_url):
            if url is not None and not _secure(url):
                raise ValueError(f"social provider {self.name}: {url} must use https (http only on loopback)")

    @property
    def source(self) -> str:
        """The identifier type and the trait source of this provider's customers."""
        return f"social:{self.name}"

    @property
    def discovery(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"


#: Issuers (and the one discovery URL that does not follow the rule) as the providers publish them.
#: Trust for e-mail: Google and Apple verify the addresses they vouch for; Microsoft's `email`
#: claim is whatever a tenant administrator typed (the "nOAuth" takeover), Facebook's is unverified.
PRESETS: dict[str, dict[str, Any]] = {
    "google": {"issuer": "https://accounts.google.com", "trusted_for_email": True},
    "microsoft": {"issuer": "https://login.microsoftonline.com/{tenant}/v2.0", "trusted_for_email": False},
    "apple": {
        "issuer": "https://appleid.apple.com",
        "scopes": ("openid", "email", "name"),
        "response_mode": "form_post",
        "trusted_for_email": True,
    },
    "facebook": {
        "issuer": "https://www.facebook.com",
        "discovery_url": "https://www.facebook.com/.well-known/openid-configuration/",
        "trusted_for_email": False,
    },
}


def preset(kind: str, client_id: str, client_secret: str | None = None, **overrides: Any) -> SocialProvider:
    """A provider from `PRESETS`; `microsoft` needs `tenant=` (a tenant id, or `consumers`: the
    multi-tenant `common` endpoint has no single issuer to check)."""
    if kind not in PRESETS:
        raise ValueError(f"no social login preset {kind!r}; known: {', '.join(sorted(PRESETS))}")
    settings = dict(PRESETS[kind])
    tenant = overrides.pop("tenant", None)
    if "{tenant}" in settings["issuer"]:
        if not tenant or tenant in {"common", "organizations"}:
            raise ValueError(f"preset {kind!r} needs tenant= (a tenant id or 'consumers')")
        tenant = "9188040d-6c67-4c5b-b112-36a304b66dad" if tenant == "consumers" else tenant
        settings["issuer"] = settings["issuer"].format(tenant=tenant)
    settings.update(overrides)
    settings.setdefault("name", kind)
    return SocialProvider(client_id=client_id, client_secret=client_secret, **settings)


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    loopback = parts.hostname in {"127.0.0.1", "::1", "localhost"}
    return parts.scheme == "https" or (parts.scheme == "http" and loopback)


# -- discovery and keys -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: frozenset[str]
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, provider: SocialProvider, doc: Any) -> ProviderMetadata:
        where = f"{provider.name}: discovery document {provider.discovery}"
        if not isinstance(doc, dict):
            raise BadDiscovery(f"{where} is not a JSON object")
        for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str) or not _secure(doc[key]):
                raise BadDiscovery(f"{where} has no usable {key}")
        if doc["issuer"] != provider.issuer:  # OpenID Connect Discovery §4.3
            raise WrongIssuer(f"{where} names issuer {doc['issuer']!r}, configured {provider.issuer!r}")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise BadDiscovery(f"{where}: the provider does not support PKCE with S256")
        offered = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = frozenset(a for a in offered if a in ASYMMETRIC)
        if not algorithms:
            raise BadDiscovery(f"{where}: no asymmetric ID token algorithm among {offered}")
        userinfo = doc.get("userinfo_endpoint")
        return cls(
            doc["issuer"], doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"],
            userinfo if isinstance(userinfo, str) and _secure(userinfo) else None, algorithms, doc,
        )  # fmt: skip


@dataclass
class Discovery:
    """Discovery documents and key sets, fetched on first use and cached for `ttl` seconds. An ID
    token signed with a key id not in the cached set refetches the set (at most once per
    `refresh_interval`), which is how a provider's key rotation reaches us."""

    ttl: float = 3600.0
    refresh_interval: float = 60.0
    timeout: float = 10.0
    clock: Any = time.monotonic
    _documents: dict[str, tuple[float, ProviderMetadata]] = field(default_factory=dict)
    _keys: dict[str, tuple[float, KeySet]] = field(default_factory=dict)

    async def metadata(self, provider: SocialProvider) -> ProviderMetadata:
        cached = self._documents.get(provider.discovery)
        if cached and self.clock() - cached[0] < self.ttl:
            return cached[1]
        meta = ProviderMetadata.parse(
            provider, await self._get_json(provider, provider.discovery, "discovery")
        )
        self._documents[provider.discovery] = (self.clock(), meta)
        return meta

    async def keys(self, provider: SocialProvider, *, refresh: bool = False) -> KeySet:
        meta = await self.metadata(provider)
        cached = self._keys.get(meta.jwks_uri)
        if cached:
            age = self.clock() - cached[0]
            if age < self.ttl and not (refresh and age >= self.refresh_interval):
                return cached[1]
        doc = await self._get_json(provider, meta.jwks_uri, "JWKS")
        found = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(found, list):
            raise BadDiscovery(f"{provider.name}: JWKS {meta.jwks_uri} has no 'keys' list")
        usable = []
        for item in found:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                usable.append(import_key(item))
            except (JoseError, ValueError, TypeError):
                continue  # a key type we cannot use (or a broken entry) cannot sign our tokens
        keys = KeySet(usable)
        self._keys[meta.jwks_uri] = (self.clock(), keys)
        return keys

    async def _get_json(self, provider: SocialProvider, url: str, what: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(f"{provider.name}: cannot fetch {what} {url}: {exc!r}") from exc
        if response.status_code != 200:
            raise ProviderUnreachable(f"{provider.name}: {what} {url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise BadDiscovery(f"{provider.name}: {what} {url} is not JSON") from exc


# -- the flow ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingLogin:
    """What the relying party keeps between the redirect and the callback. It holds the PKCE
    verifier: keep it server-side (or in an encrypted cookie), never in the page."""

    provider: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    scopes: tuple[str, ...]
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "scopes": list(self.scopes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingLogin:
        return cls(**{**data, "scopes": tuple(data["scopes"])})


@dataclass(frozen=True)
class SocialIdentity:
    """A validated social sign-in, reduced to what the customer agreed to share."""

    provider: SocialProvider
    subject: str
    claims: Mapping[str, Any]  # only the granted scopes' claims
    granted_scopes: frozenset[str]
    id_token_claims: Mapping[str, Any]  # as signed, for audit; use `claims` for data
    id_token: str  # kept for RP-initiated logout (`id_token_hint`)

    @property
    def identifier(self) -> tuple[str, str]:
        """(type, value) for `context.externalIds`: identity resolution links it like any id."""
        return (self.provider.source, self.subject)

    @property
    def email_verified(self) -> bool:
        return is_verified(self.claims)

    @property
    def traits(self) -> dict[str, Any]:
        return to_traits(self.provider, self.claims)

    def linkable_email(self) -> str | None:
        return linkable_email(self.provider, self.claims)

    def identify_message(self, user_id: str) -> dict[str, Any]:
        """A Segment `identify` for the log, to be written from the source `social:<provider>`."""
        return {
            "type": "identify",
            "userId": user_id,
            "traits": self.traits,
            "context": {
                "externalIds": [
                    {
                        "type": self.provider.source,
                        "id": self.subject,
                        "collection": "users",
                        "encoding": "none",
                    }
                ]
            },
        }


class RelyingParty:
    """Sign-in with one provider. `discovery` may be shared by every provider (it caches per URL)."""

    def __init__(self, provider: SocialProvider, discovery: Discovery | None = None) -> None:
        self.provider = provider
        self.discovery = discovery or Discovery()

    def _client(self, pending: PendingLogin) -> AsyncOAuth2Client:
        p = self.provider
        return AsyncOAuth2Client(
            client_id=p.client_id,
            client_secret=p.client_secret,
            token_endpoint_auth_method=p.token_auth_method if p.client_secret else "none",
            scope=" ".join(pending.scopes),
            redirect_uri=pending.redirect_uri,
            code_challenge_method="S256",
            timeout=self.discovery.timeout,
        )

    async def begin(self, redirect_uri: str, scopes: Sequence[str] | None = None) -> tuple[str, PendingLogin]:
        """The URL to send the customer to, and what to keep until they come back."""
        meta = await self.discovery.metadata(self.provider)
        pending = PendingLogin(
            provider=self.provider.name,
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48),
            redirect_uri=redirect_uri,
            scopes=tuple(scopes or self.provider.scopes),
            created_at=time.time(),
        )
        if "openid" not in pending.scopes:
            raise ValueError("the scopes of a social login must include 'openid'")
        async with self._client(pending) as client:
            extra = {"response_mode": self.provider.response_mode} if self.provider.response_mode else {}
            url, _ = client.create_authorization_url(
                meta.authorization_endpoint, state=pending.state, code_verifier=pending.code_verifier,
                nonce=pending.nonce, **extra,
            )  # fmt: skip
        return url, pending

    async def complete(
        self, pending: PendingLogin, params: Mapping[str, str], now: float | None = None
    ) -> SocialIdentity:
        """Check the callback's `params` (its query, or its form with `response_mode=form_post`),
        exchange the code and validate what comes back."""
        name = self.provider.name
        now = time.time() if now is None else now
        if pending.provider != name:
            raise BadState(f"{name}: the pending sign-in belongs to provider {pending.provider!r}")
        if "error" in params:
            detail = params.get("error_description") or params["error"]
            raise ProviderRefused(f"{name}: the provider answered {params['error']!r}: {detail}")
        if not secrets.compare_digest(str(params.get("state", "")), pending.state):
            raise BadState(f"{name}: bad state: the callback's state is not the one sent")
        if now - pending.created_at > PENDING_MAX_AGE:
            raise BadState(f"{name}: bad state: the sign-in began more than {PENDING_MAX_AGE} s ago")
        meta = await self.discovery.metadata(self.provider)
        if "iss" in params and params["iss"] != meta.issuer:  # RFC 9207: a mix-up attack
            raise WrongIssuer(
                f"{name}: the callback names issuer {params['iss']!r}, expected {meta.issuer!r}"
            )
        if not params.get("code"):
            raise ProviderRefused(f"{name}: the callback carries no code")
        async with self._client(pending) as client:
            try:
                token = await client.fetch_token(
                    meta.token_endpoint, grant_type="authorization_code", code=params["code"],
                    code_verifier=pending.code_verifier,
                )  # fmt: skip
            except httpx.HTTPError as exc:
                raise ProviderUnreachable(f"{name}: token endpoint {meta.token_endpoint}: {exc!r}") from exc
            except AuthlibBaseError as exc:
                raise ProviderRefused(f"{name}: the token endpoint refused the code: {exc}") from exc
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise TokenExchangeFailed(f"{name}: the token response holds no ID token")
            id_claims = await self.validate_id_token(id_token, pending.nonce, now=now)
            userinfo: dict[str, Any] = {}
            if meta.userinfo_endpoint and token.get("access_token"):
                userinfo = await self._userinfo(client, meta.userinfo_endpoint, id_claims["sub"])
        granted = set(str(token.get("scope") or " ".join(pending.scopes)).split()) & set(pending.scopes)
        claims = {**userinfo, **id_claims}  # the signed token wins where both speak
        return SocialIdentity(
            self.provider,
            id_claims["sub"],
            shared_claims(claims, granted),
            frozenset(granted),
            id_claims,
            id_token,
        )

    async def _userinfo(self, client: AsyncOAuth2Client, url: str, subject: str) -> dict[str, Any]:
        name = self.provider.name
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(f"{name}: userinfo {url}: {exc!r}") from exc
        if response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
            raise ProviderRefused(f"{name}: userinfo {url} answered HTTP {response.status_code}")
        info = response.json()
        if not isinstance(info, dict) or info.get("sub") != subject:  # OIDC Core §5.3.2
            raise InvalidIdToken(f"{name}: userinfo is about another subject than the ID token")
        return info

    async def validate_id_token(self, id_token: str, nonce: str, now: float | None = None) -> dict[str, Any]:
        """The ID token's claims after checking its signature against the provider's JWKS (fetched
        again once when the key id is unknown: key rotation), then iss, aud/azp, exp, iat, nonce."""
        p, meta = self.provider, await self.discovery.metadata(self.provider)
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise BadSignature(f"{p.name}: the ID token is not a signed JWT: {exc}") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in meta.algorithms:
            raise BadSignature(
                f"{p.name}: ID token signed with {alg!r}, expected one of {sorted(meta.algorithms)}"
            )
        keys = await self.discovery.keys(p)
        if not _has_key(keys, kid):
            keys = await self.discovery.keys(p, refresh=True)
            if not _has_key(keys, kid):
                raise UnknownKeyId(
                    f"{p.name}: unknown key id {kid!r}: not in the provider's JWKS {meta.jwks_uri}"
                )
        try:
            claims = dict(jwt.decode(id_token, keys.get_by_kid(kid), algorithms=[alg]).claims)
        except BadSignatureError as exc:
            raise BadSignature(
                f"{p.name}: the ID token's signature does not verify with key {kid!r}"
            ) from exc
        except (JoseError, ValueError) as exc:
            raise BadSignature(f"{p.name}: the ID token cannot be verified: {exc}") from exc
        return check_id_token_claims(p, meta.issuer, claims, nonce, time.time() if now is None else now)


def _has_key(keys: KeySet, kid: str | None) -> bool:
    if kid is None:
        return len(keys.keys) == 1
    return any(key.kid == kid for key in keys.keys)


def check_id_token_claims(
    provider: SocialProvider, issuer: str, claims: dict[str, Any], nonce: str, now: float
) -> dict[str, Any]:
    """OIDC Core §3.1.3.7 on verified claims: the checks that make a signed token *ours*."""
    name, leeway = provider.name, provider.leeway
    if claims.get("iss") != issuer:
        raise WrongIssuer(
            f"{name}: wrong issuer: the ID token names {claims.get('iss')!r}, expected {issuer!r}"
        )
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.client_id not in audiences:
        raise WrongAudience(
            f"{name}: wrong audience: the ID token is for {audience!r}, not {provider.client_id!r}"
        )
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise WrongAudience(f"{name}: wrong audience: several audiences and azp {claims.get('azp')!r}")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenExpired(f"{name}: the ID token has no expiry (exp)")
    if now > exp + leeway:
        raise TokenExpired(f"{name}: the ID token expired {int(now - exp)} s ago")
    if not isinstance(iat, int | float) or iat > now + leeway:
        raise InvalidIdToken(f"{name}: the ID token's issue time (iat) is missing or in the future")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise NonceMismatch(f"{name}: nonce mismatch: the ID token does not answer this sign-in")
    if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
        raise InvalidIdToken(f"{name}: the ID token has no usable subject (sub)")
    return claims
