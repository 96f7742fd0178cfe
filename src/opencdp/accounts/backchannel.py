"""OpenID Connect Back-Channel Logout 1.0: when a customer signs out, every client application
that took part in the session and registered a `backchannel_logout_uri` is told so, server to
server, with a logout token signed like ID tokens. A site that keeps its own session cookie ends
it there, so signing out at one of the brand's sites signs the customer out of all of them.

Who took part: the clients that received a code or a token under the session's `sid`, found
before the session's rows go. Delivery runs on a thread of its own (a slow or dead site never
holds up the customer's logout page), once per client with a short timeout; a failure is logged
with the client and the status, never the token.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import httpx
import sqlalchemy as sa
from joserfc import jwt

from opencdp import logs
from opencdp.accounts.keys import ALGORITHM, SigningKeys
from opencdp.store.schema import account_clients, account_codes, account_sessions, account_tokens

EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: A logout token is good for this long (the specification recommends at most two minutes).
TOKEN_SECONDS = 120
TIMEOUT_SECONDS = 5.0
log = logs.get("opencdp.accounts")


@dataclass(frozen=True)
class Notice:
    """One client to tell that the customer `account_id` left session `sid`."""

    client_id: str
    uri: str
    account_id: str
    sid: str


def participants(conn: sa.Connection, sid: str) -> list[Notice]:
    """The clients of session `sid` that want to hear of its end (read before it ends)."""
    by_session = sa.select(account_sessions.c.account_id).where(account_sessions.c.sid == sid)
    by_token = sa.select(account_tokens.c.account_id).where(account_tokens.c.sid == sid).limit(1)
    account_id = conn.execute(by_session).scalar() or conn.execute(by_token).scalar()
    if account_id is None:
        return []
    took_part = sa.union(
        sa.select(account_tokens.c.client_id).where(account_tokens.c.sid == sid),
        sa.select(account_codes.c.client_id).where(account_codes.c.sid == sid),
    ).subquery()
    rows = conn.execute(
        sa.select(account_clients.c.client_id, account_clients.c.backchannel_logout_uri)
        .where(
            account_clients.c.client_id.in_(sa.select(took_part.c.client_id)),
            account_clients.c.backchannel_logout_uri.is_not(None),
        )
        .order_by(account_clients.c.client_id)
    )
    return [Notice(r.client_id, r.backchannel_logout_uri, str(account_id), sid) for r in rows]


def logout_token(keys: SigningKeys, issuer: str, notice: Notice, now: float | None = None) -> str:
    """The signed logout token for one client: iss, aud, iat, exp, jti, sub, sid and the
    back-channel logout event; never a nonce (the specification forbids one)."""
    now = time.time() if now is None else now
    signer = keys.signer()
    claims = {
        "iss": issuer,
        "aud": notice.client_id,
        "iat": int(now),
        "exp": int(now) + TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "sub": notice.account_id,
        "sid": notice.sid,
        "events": {EVENT: {}},
    }
    header = {"alg": ALGORITHM, "kid": signer.kid, "typ": "logout+jwt"}
    return jwt.encode(header, claims, signer, algorithms=[ALGORITHM])


def deliver(notices: list[tuple[Notice, str]]) -> None:
    """POST each logout token to its client (form field `logout_token`, as the specification says)."""
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
        for notice, token in notices:
            try:
                answer = client.post(notice.uri, data={"logout_token": token})
            except httpx.HTTPError as exc:
                error = type(exc).__name__
                log.warning("back-channel logout not delivered", client=notice.client_id, error=error)
                continue
            if answer.status_code not in (200, 204):
                log.warning("back-channel logout refused", client=notice.client_id, status=answer.status_code)


def notify(keys: SigningKeys, issuer: str, notices: list[Notice]) -> threading.Thread | None:
    """Sign now (the keys may rotate later), deliver on a thread of its own; the thread, or None
    when no client wants to hear."""
    if not notices:
        return None
    signed = [(n, logout_token(keys, issuer, n)) for n in notices]
    thread = threading.Thread(target=deliver, args=(signed,), name="backchannel-logout", daemon=True)
    thread.start()
    return thread
