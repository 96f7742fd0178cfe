"""The OpenID Connect provider, built from Authlib's grants.

Authlib brings the protocol: the authorization code grant (RFC 6749) with PKCE (RFC 7636), the
OpenID Connect code flow (ID token, nonce, `prompt`), refresh tokens and RP-initiated logout. It
has no server integration for Starlette, so this module supplies what a framework integration
does — requests in, responses out — and the storage: codes and tokens are kept as SHA-256 hashes
(a copy of the database gives no usable token), ID tokens are signed with the newest live key
(`accounts/keys.py`).

Our rules on top of Authlib's defaults:
- PKCE is required for public clients at the authorization request (not only at the token
  endpoint), and only S256 is accepted (`plain` protects nothing against a leaked request).
- A code is claimed by the exchange that reads it (deleted in the same transaction), so two
  exchanges of one code cannot both win.
- A refresh rotates: the used refresh token is revoked and a new one issued. Presenting a revoked
  refresh token again means it was copied: every token of that session and client is revoked.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import InvalidRequestError, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc.jwk import RSAKey
from starlette.responses import Response

from opencdp.accounts import backchannel, clients, sessions, store
from opencdp.accounts.claims import claims_for, profile_of
from opencdp.accounts.config import AccountSettings
from opencdp.accounts.keys import ALGORITHM, SigningKeys
from opencdp.accounts.store import Account
from opencdp.identity.identifiers import IdentityRules
from opencdp.store.schema import account_codes, account_tokens

CODE_SECONDS = 600
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ProviderRequest(OAuth2Request):
    """A request as Authlib's grants read it, made from a Starlette request whose body was
    already read (the grants are synchronous)."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        cookie_sid: str | None = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        self.cookie_sid = cookie_sid
        #: the customer confirmed a sign-out with the page's CSRF-protected form
        self.confirmed = False
        self.payload = _Payload([*query, *form])

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Payload:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self.datalist[key].append(value)
        self.data = {key: values[0] for key, values in self.datalist.items()}

    client_id = property(lambda self: self.data.get("client_id"))
    redirect_uri = property(lambda self: self.data.get("redirect_uri"))
    grant_type = property(lambda self: self.data.get("grant_type"))
    scope = property(lambda self: self.data.get("scope"))
    state = property(lambda self: self.data.get("state"))

    @property
    def response_type(self) -> str | None:
        value = self.data.get("response_type")
        return " ".join(sorted(value.split())) if value and " " in value else value


@dataclass(frozen=True)
class Principal:
    """The signed-in customer as the grants see them: the account and the SSO session."""

    account: Account
    sid: str
    auth_time: datetime
    amr: tuple[str, ...] = ("pwd",)

    def get_user_id(self) -> str:
        return self.account.id


@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):
    client_id: str
    account_id: str
    sid: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: datetime
    amr: tuple[str, ...] = ("pwd",)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return list(self.amr)


@dataclass(frozen=True)
class Issued(TokenMixin):
    id: int
    client_id: str
    account_id: str
    sid: str
    scope: str
    refresh_expires_at: datetime | None
    revoked: bool

    def check_client(self, client: clients.Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return 0

    def is_expired(self) -> bool:
        return self.refresh_expires_at is None or self.refresh_expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return self.revoked


class S256Only(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        client: clients.Client = grant.request.client
        if client.public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must send a 'code_challenge' (PKCE with S256).")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code: str, request: ProviderRequest) -> None:
        user: Principal = request.user
        data = request.payload.data
        now = datetime.now(UTC)
        with self.server.engine.begin() as conn:
            conn.execute(account_codes.delete().where(account_codes.c.expires_at < now))
            conn.execute(
                account_codes.insert().values(
                    code_hash=digest(code),
                    client_id=request.client.client_id,
                    account_id=user.account.id,
                    sid=user.sid,
                    redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
                    scope=request.scope or "",
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    auth_time=user.auth_time,
                    amr=" ".join(user.amr),
                    expires_at=now + timedelta(seconds=CODE_SECONDS),
                )
            )

    def query_authorization_code(self, code: str, client: clients.Client) -> Code | None:
        key = digest(code)
        with self.server.engine.begin() as conn:
            row = conn.execute(
                sa.select(account_codes).where(
                    account_codes.c.code_hash == key, account_codes.c.client_id == client.client_id
                )
            ).first()
            if row is None:
                return None
            # claimed here: a second exchange of the same code finds nothing
            claimed = conn.execute(account_codes.delete().where(account_codes.c.code_hash == key)).rowcount
        if claimed != 1 or row.expires_at <= datetime.now(UTC):
            return None
        return Code(
            row.client_id,
            row.account_id,
            row.sid,
            row.redirect_uri,
            row.scope,
            row.nonce,
            row.code_challenge,
            row.code_challenge_method,
            row.auth_time,
            tuple((row.amr or "pwd").split()),
        )

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing left to delete: the exchange claimed the code when it read it."""

    def authenticate_user(self, authorization_code: Code) -> Principal | None:
        account = store.find(self.server.engine, account_id=authorization_code.account_id)
        if account is None or account.disabled:
            return None
        return Principal(
            account, authorization_code.sid, authorization_code.auth_time, authorization_code.amr
        )


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Issued | None:
        with self.server.engine.connect() as conn:
            row = conn.execute(
                sa.select(account_tokens).where(account_tokens.c.refresh_hash == digest(refresh_token))
            ).first()
        if row is None:
            return None
        token = Issued(
            row.id,
            row.client_id,
            row.account_id,
            row.sid,
            row.scope,
            row.refresh_expires_at,
            bool(row.revoked),
        )
        if token.revoked:
            # a rotated refresh token used again: someone holds a copy; end that client's grant
            with self.server.engine.begin() as conn:
                conn.execute(
                    account_tokens.update()
                    .where(account_tokens.c.sid == row.sid, account_tokens.c.client_id == row.client_id)
                    .values(revoked=True)
                )
            return None
        return None if token.is_expired() else token

    def authenticate_user(self, refresh_token: Issued) -> Principal | None:
        account = store.find(self.server.engine, account_id=refresh_token.account_id)
        if account is None or account.disabled:
            return None
        return Principal(account, refresh_token.sid, datetime.now(UTC))

    def revoke_old_credential(self, refresh_token: Issued) -> None:
        with self.server.engine.begin() as conn:
            conn.execute(
                account_tokens.update().where(account_tokens.c.id == refresh_token.id).values(revoked=True)
            )


class OpenID(OpenIDCode):
    """ID tokens: RS256 with the newest live key (its kid in the header), `iss` the issuer, `aud`
    the client, `sid` the SSO session, the claims of the granted scopes."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: ProviderRequest) -> bool:
        with self.provider.engine.connect() as conn:
            found = conn.execute(
                sa.select(account_codes.c.code_hash).where(
                    account_codes.c.client_id == request.payload.client_id, account_codes.c.nonce == nonce
                )
            ).first()
        return found is not None

    def resolve_client_private_key(self, client: clients.Client) -> RSAKey:
        return self.provider.keys.signer()

    def get_client_algorithm(self, client: clients.Client) -> str:
        return ALGORITHM

    def get_encode_header(self, client: clients.Client) -> dict[str, Any]:
        return {"alg": ALGORITHM, "kid": self.provider.keys.signer().kid, "typ": "JWT"}

    def get_client_claims(self, client: clients.Client) -> dict[str, Any]:
        return {
            "iss": self.provider.settings.issuer,
            "aud": client.client_id,
            "exp": int(time.time()) + self.provider.settings.access_token_seconds,
        }

    def generate_user_info(self, user: Principal, scope: str) -> dict[str, Any]:
        return {**self.provider.claims(user.account, scope), "sid": user.sid}


class EndSession(EndSessionEndpoint):
    server: Provider

    def get_server_jwks(self) -> dict[str, Any]:
        return self.server.keys.jwks()

    def get_algorithms(self) -> list[str]:
        return [ALGORITHM]

    def is_post_logout_redirect_uri_legitimate(
        self, request: ProviderRequest, post_logout_redirect_uri: str, client: Any, logout_hint: str | None
    ) -> bool:
        """Without an ID token, a registered post-logout URI is followed once the customer
        confirmed on our own page."""
        return request.confirmed

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        """End the SSO session everywhere: its tokens are revoked, and the clients that took part
        and registered a back-channel logout URI are told (`accounts/backchannel.py`)."""
        request: ProviderRequest = end_session_request.request
        found = {request.cookie_sid}
        if end_session_request.id_token_claims:
            found.add(end_session_request.id_token_claims.get("sid"))
        notices: list[backchannel.Notice] = []
        for sid in found:
            if isinstance(sid, str) and sid:
                with self.server.engine.connect() as conn:
                    notices += backchannel.participants(conn, sid)
                sessions.end_sid(self.server.engine, sid)
        backchannel.notify(self.server.keys, self.server.settings.issuer, notices)


class Provider(AuthorizationServer):
    def __init__(
        self, engine: sa.Engine, keys: SigningKeys, rules: IdentityRules, settings: AccountSettings
    ) -> None:
        super().__init__(scopes_supported=list(clients.SCOPES))
        self.engine, self.keys, self.rules, self.settings = engine, keys, rules, settings
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: generate_token(42),
                refresh_token_generator=lambda **_: generate_token(48),
                expires_generator=lambda client, grant_type: settings.access_token_seconds,
            ),
        )
        self.register_grant(CodeGrant, [S256Only(required=True), OpenID(self)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(EndSession)

    # --- what a framework integration supplies ---

    def query_client(self, client_id: str) -> clients.Client | None:
        return clients.get(self.engine, client_id) if client_id else None

    def create_oauth2_request(self, request: Any) -> ProviderRequest:
        if not isinstance(request, ProviderRequest):
            raise TypeError("build a ProviderRequest from the Starlette request first")
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        if isinstance(body, dict):
            body = orjson.dumps(body)
        return Response(body, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing listens."""

    def save_token(self, token: dict[str, Any], request: ProviderRequest) -> None:
        user: Principal = request.user
        now = datetime.now(UTC)
        refresh = token.get("refresh_token")
        with self.engine.begin() as conn:
            conn.execute(
                account_tokens.insert().values(
                    access_hash=digest(token["access_token"]),
                    refresh_hash=digest(refresh) if refresh else None,
                    client_id=request.client.client_id,
                    account_id=user.account.id,
                    sid=user.sid,
                    scope=token.get("scope") or "",
                    issued_at=now,
                    access_expires_at=now + timedelta(seconds=int(token["expires_in"])),
                    refresh_expires_at=now + timedelta(days=self.settings.refresh_token_days)
                    if refresh
                    else None,
                    revoked=False,
                )
            )

    # --- what the endpoints need besides ---

    def claims(self, account: Account, scope: str) -> dict[str, Any]:
        return claims_for(account, scope, profile_of(self.engine, self.rules, account.id))

    def userinfo(self, access_token: str) -> dict[str, Any] | None:
        """The claims for a live access token, or None (unknown, expired, revoked)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(account_tokens).where(account_tokens.c.access_hash == digest(access_token))
            ).first()
        if row is None or row.revoked or row.access_expires_at <= datetime.now(UTC):
            return None
        account = store.find(self.engine, account_id=row.account_id)
        if account is None or account.disabled:
            return None
        return self.claims(account, row.scope)

    def metadata(self) -> dict[str, Any]:
        issuer = self.settings.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/accounts/authorize",
            "token_endpoint": f"{issuer}/accounts/token",
            "userinfo_endpoint": f"{issuer}/accounts/userinfo",
            "jwks_uri": f"{issuer}/accounts/jwks.json",
            "end_session_endpoint": f"{issuer}/accounts/logout",
            "scopes_supported": list(clients.SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(clients.GRANT_TYPES),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "sid",
                "amr",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "given_name",
                "family_name",
                "locale",
                "updated_at",
                "phone_number",
                "phone_number_verified",
            ],
            "prompt_values_supported": ["none", "login"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "frontchannel_logout_supported": False,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }
