"""Client applications (relying parties): the brand's sites and services that send customers
here to sign in. Confidential clients (a server that keeps a secret) authenticate at the token
endpoint with their secret; public ones (single-page and mobile apps) have none and must use PKCE
with S256. Redirect URIs are matched exactly, character for character: no prefixes, no
wildcards — a lax match is how codes leak to attackers.

`Client` is what Authlib's grants ask questions of (`authlib.oauth2.rfc6749.ClientMixin`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list

from opencdp.access.keys import hash_secret
from opencdp.store.schema import account_clients, account_codes, account_tokens

SCOPES = ("openid", "profile", "email", "phone")
GRANT_TYPES = ("authorization_code", "refresh_token")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{3,64}$")


class ClientError(ValueError):
    """A client definition that cannot be saved; the message names what is wrong."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_uri(uri: str, what: str = "redirect URI") -> str:
    """Absolute https (http only on this machine: localhost, 127.0.0.1), no fragment."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise ClientError(f"{what} {uri!r} is not a URL") from None
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname or "")):
        if not parts.hostname or parts.fragment or "#" in uri:
            raise ClientError(f"{what} {uri!r} needs a host and no #fragment")
        return uri
    raise ClientError(f"{what} {uri!r} must be https:// (http:// only for localhost)")


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: datetime
    secret_hash: str | None = field(default=None, repr=False)
    backchannel_logout_uri: str | None = None

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # only when exactly one is registered: otherwise the request must name it
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return str(list_to_scope([s for s in scope_to_list(scope) if s in self.scopes]))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, hash_secret(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "type": "public" if self.public else "confidential",
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "scopes": list(self.scopes),
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "created_at": self.created_at,
        }


def _client(row: sa.Row[tuple[object, ...]]) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        public=row.secret_hash is None,
        redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        secret_hash=row.secret_hash,
        backchannel_logout_uri=row.backchannel_logout_uri,
    )


def add(
    engine: sa.Engine,
    name: str,
    redirect_uris: list[str],
    *,
    public: bool = False,
    scopes: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    client_id: str | None = None,
    backchannel_logout_uri: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (shown once; None for a public client)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ClientError("a client needs a name (at most 200 characters)")
    if not redirect_uris:
        raise ClientError("a client needs at least one redirect URI")
    uris = [check_uri(u) for u in redirect_uris]
    logouts = [check_uri(u, "post-logout redirect URI") for u in post_logout_redirect_uris or []]
    backchannel = backchannel_logout_uri and check_uri(backchannel_logout_uri, "back-channel logout URI")
    wanted = list(scopes) if scopes else list(SCOPES)
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise ClientError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    if "openid" not in wanted:
        raise ClientError("the scopes must include openid")
    client_id = client_id or "cl_" + secrets.token_hex(8)
    if not _CLIENT_ID.match(client_id):
        raise ClientError("a client id has 3 to 64 letters, digits, '.', '_' or '-'")
    secret = None if public else "cs_" + secrets.token_urlsafe(32)
    try:
        with engine.begin() as conn:
            conn.execute(
                account_clients.insert().values(
                    client_id=client_id,
                    name=name,
                    secret_hash=hash_secret(secret) if secret else None,
                    redirect_uris=list(dict.fromkeys(uris)),
                    post_logout_redirect_uris=list(dict.fromkeys(logouts)),
                    scopes=[s for s in SCOPES if s in wanted],
                    created_at=datetime.now(UTC),
                    backchannel_logout_uri=backchannel,
                )
            )
    except sa.exc.IntegrityError:
        raise ClientError(f"a client with id {client_id!r} exists already") from None
    found = get(engine, client_id)
    if found is None:
        raise ClientError(f"client {client_id!r} was not saved")
    return found, secret


def get(engine: sa.Engine, client_id: str) -> Client | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(account_clients).where(account_clients.c.client_id == client_id)).first()
    return _client(row) if row else None


def list_all(engine: sa.Engine) -> list[Client]:
    with engine.connect() as conn:
        return [_client(r) for r in conn.execute(sa.select(account_clients).order_by(account_clients.c.name))]


def remove(engine: sa.Engine, client_id: str) -> bool:
    """Remove a client; its codes go and its tokens are revoked with it."""
    with engine.begin() as conn:
        conn.execute(account_codes.delete().where(account_codes.c.client_id == client_id))
        conn.execute(
            account_tokens.update().where(account_tokens.c.client_id == client_id).values(revoked=True)
        )
        return (
            conn.execute(account_clients.delete().where(account_clients.c.client_id == client_id)).rowcount
            == 1
        )
