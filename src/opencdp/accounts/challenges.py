"""A sign-in between its two steps: the password was right, the code is still to come.

Server-side like sessions: the cookie holds 256 random bits, the database their SHA-256, the
account, where to go afterwards and the step's own CSRF token. It is no session — nothing but the
code form accepts it — and it ends after a few minutes or with the sign-in it belongs to.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.store.schema import account_challenges

COOKIE = "opencdp_account_challenge"
LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class Challenge:
    id: str
    account_id: str
    csrf_token: str
    #: how the first step was passed ("password"), for the `Signed In` event
    method: str
    next_url: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(engine: sa.Engine, account_id: str, method: str, next_url: str, now: datetime | None = None) -> str:
    """A new challenge for the account (any earlier one of it ends); returns the cookie value."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            account_challenges.delete().where(
                sa.or_(account_challenges.c.expires_at < now, account_challenges.c.account_id == account_id)
            )
        )
        conn.execute(
            account_challenges.insert().values(
                id=_digest(token),
                account_id=account_id,
                csrf_token=secrets.token_urlsafe(32),
                method=method,
                next_url=next_url,
                expires_at=now + LIFETIME,
            )
        )
    return token


def load(engine: sa.Engine, token: str | None, now: datetime | None = None) -> Challenge | None:
    if not token or len(token) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(account_challenges).where(account_challenges.c.id == _digest(token))
        ).first()
    if row is None or row.expires_at <= (now or datetime.now(UTC)):
        return None
    return Challenge(row.id, row.account_id, row.csrf_token, row.method, row.next_url)


def end(engine: sa.Engine, challenge: Challenge) -> bool:
    """True when this call ended it (so only one of two posts of the same code signs in)."""
    with engine.begin() as conn:
        done = conn.execute(account_challenges.delete().where(account_challenges.c.id == challenge.id))
    return done.rowcount == 1
