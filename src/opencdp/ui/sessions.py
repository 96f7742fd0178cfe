"""Server-side sessions for the dashboard.

Why server-side rather than signed cookies: signing out, disabling a user or changing a password
ends the session at once, the role is read fresh on every request, and there is no signing secret
to generate, share between `serve` processes and rotate. The cookie holds a 256-bit random token;
the database stores only its SHA-256, so a copy of the database gives no usable cookie.

A session ends after `OPENCDP_UI_IDLE_MINUTES` without a request, and after
`OPENCDP_UI_SESSION_MINUTES` in any case. Each session has its own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.ui.config import UISettings
from opencdp.ui.tables import ui_sessions, users
from opencdp.ui.users import User

COOKIE = "opencdp_session"
#: `last_seen_at` is written at most this often, so browsing does not write on every page view.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Session:
    id: str
    user: User
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), str(token).encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(engine: sa.Engine, user: User, settings: UISettings, now: datetime | None = None) -> str:
    """Open a session for the user; returns the cookie value (only ever known to the browser)."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        # Housekeeping on sign-in keeps the table small without a background job.
        conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at < now))
        conn.execute(
            ui_sessions.insert().values(
                id=_digest(token),
                user_id=user.id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                expires_at=now + settings.lifetime,
            )
        )
    return token


def load(
    engine: sa.Engine, token: str | None, settings: UISettings, now: datetime | None = None
) -> Session | None:
    """The live session for a cookie value, or None (unknown, expired, idle too long, user disabled)."""
    if not token or len(token) > 200:
        return None
    now = now or datetime.now(UTC)
    key = _digest(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                ui_sessions.c.csrf_token,
                ui_sessions.c.last_seen_at,
                ui_sessions.c.expires_at,
                users.c.id,
                users.c.email,
                users.c.role,
                users.c.created_at,
                users.c.disabled,
            )
            .join(users, users.c.id == ui_sessions.c.user_id)
            .where(ui_sessions.c.id == key)
        ).first()
    if row is None:
        return None
    if row.disabled or row.expires_at <= now or row.last_seen_at + settings.idle <= now:
        end(engine, token)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with engine.begin() as conn:
            conn.execute(ui_sessions.update().where(ui_sessions.c.id == key).values(last_seen_at=now))
    user = User(row.id, row.email, row.role, row.created_at, bool(row.disabled))
    return Session(key, user, row.csrf_token, row.expires_at)


def end(engine: sa.Engine, token: str | None) -> None:
    if token:
        with engine.begin() as conn:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.id == _digest(token)))
