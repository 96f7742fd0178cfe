"""Single sign-on sessions of the provider, server-side like the dashboard's (`ui/sessions.py`):
the cookie holds 256 random bits, the database their SHA-256; ending a session in the database
ends it at once, in every relying party's next authorization request.

Each session also has a public id, `sid`, carried in ID tokens: RP-initiated logout with an
`id_token_hint` finds the session by it even when the browser's cookie is not sent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.store.schema import account_sessions, account_tokens, accounts

COOKIE = "opencdp_account"
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class AccountSession:
    sid: str
    account_id: str
    email: str
    csrf_token: str
    auth_time: datetime
    #: authentication methods (RFC 8176), e.g. ("pwd",) or ("pwd", "otp", "mfa")
    amr: tuple[str, ...] = ("pwd",)

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), str(token).encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    engine: sa.Engine,
    account_id: str,
    lifetime: timedelta,
    now: datetime | None = None,
    amr: tuple[str, ...] = ("pwd",),
) -> str:
    """A new session for the account; returns the cookie value."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(account_sessions.delete().where(account_sessions.c.expires_at < now))
        conn.execute(
            account_sessions.insert().values(
                id=_digest(token),
                sid=secrets.token_urlsafe(24),
                account_id=account_id,
                csrf_token=secrets.token_urlsafe(32),
                auth_time=now,
                amr=" ".join(amr),
                last_seen_at=now,
                expires_at=now + lifetime,
            )
        )
    return token


def load(engine: sa.Engine, token: str | None, now: datetime | None = None) -> AccountSession | None:
    if not token or len(token) > 200:
        return None
    now = now or datetime.now(UTC)
    key = _digest(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(account_sessions, accounts.c.email, accounts.c.disabled)
            .join(accounts, accounts.c.id == account_sessions.c.account_id)
            .where(account_sessions.c.id == key)
        ).first()
    if row is None:
        return None
    if row.disabled or row.expires_at <= now:
        end_sid(engine, row.sid)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with engine.begin() as conn:
            conn.execute(
                account_sessions.update().where(account_sessions.c.id == key).values(last_seen_at=now)
            )
    amr = tuple((row.amr or "pwd").split())
    return AccountSession(row.sid, row.account_id, row.email or "", row.csrf_token, row.auth_time, amr)


def sid_of(engine: sa.Engine, token: str | None) -> str | None:
    if not token:
        return None
    with engine.connect() as conn:
        found = conn.execute(sa.select(account_sessions.c.sid).where(account_sessions.c.id == _digest(token)))
        return found.scalar()


def end_sid(engine: sa.Engine, sid: str) -> None:
    """End the session everywhere: the session row goes, and every token issued under it is
    revoked, for every relying party (their userinfo calls and refreshes fail from now on)."""
    with engine.begin() as conn:
        conn.execute(account_sessions.delete().where(account_sessions.c.sid == sid))
        conn.execute(account_tokens.update().where(account_tokens.c.sid == sid).values(revoked=True))
