"""Links to the preference centre: what an e-mail footer or a journey step sends a customer so they
can see and change their consent, interests and preferred channel without an account.

Server-side like the dashboard's sessions (ui/sessions.py): the URL holds 256 random bits, the
database only their SHA-256, so a copy of the database opens no page, and a link ends at once when
it expires, is revoked, or its person is erased. Unknown, expired and revoked links get the same
answer, so a guesser learns nothing about which links exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencdp.profiles.reader import ProfileNotFound, resolve_profile_id
from opencdp.store.schema import preference_links

#: How long a link works unless the caller says otherwise (three days: an e-mail read late still works).
DEFAULT_HOURS = 72
#: The longest a link may work (a link in an old e-mail must not open someone's settings forever).
MAX_HOURS = 24 * 90
PATH = "/preferences/"


class LinkInvalid(LookupError):
    """The link is unknown, expired or revoked (deliberately one message for all three)."""

    def __init__(self) -> None:
        super().__init__("this link is not valid (any more); ask for a new one")


@dataclass(frozen=True)
class PreferenceLink:
    """An opened link: whose settings it shows (the live profile, after any merge) and the token
    the page's forms must send back."""

    profile_id: str
    csrf_token: str
    expires_at: datetime

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token.encode(), str(token).encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_link(
    engine: sa.Engine, profile_id: str, hours: int = DEFAULT_HOURS, actor: str | None = None
) -> tuple[str, datetime]:
    """A new link's token (shown once, never stored) and when it expires. Raises ValueError for a
    lifetime out of range and ProfileNotFound for an unknown profile."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_HOURS}, got {hours}")
    now = datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        survivor = resolve_profile_id(conn, profile_id)
        conn.execute(preference_links.delete().where(preference_links.c.expires_at < now))
        conn.execute(
            preference_links.insert().values(
                id=_digest(token),
                profile_id=survivor,
                csrf_token=secrets.token_urlsafe(32),
                created_by=actor,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
        )
    return token, now + timedelta(hours=hours)


def open_link(engine: sa.Engine, token: str, now: datetime | None = None) -> PreferenceLink:
    """The link behind `token`, its profile followed through merges; LinkInvalid otherwise."""
    now = now or datetime.now(UTC)
    if not token or len(token) > 100:
        raise LinkInvalid()
    with engine.connect() as conn:
        row = conn.execute(sa.select(preference_links).where(preference_links.c.id == _digest(token))).first()
        if row is None or row.expires_at <= now:
            raise LinkInvalid()
        try:
            survivor = resolve_profile_id(conn, row.profile_id)
        except ProfileNotFound:  # erased meanwhile
            raise LinkInvalid() from None
    return PreferenceLink(survivor, row.csrf_token, row.expires_at)


def revoke_links(conn: sa.Connection, profile_ids: set[str] | list[str]) -> int:
    """End every link of these profiles (an erasure, or a customer who asks)."""
    if not profile_ids:
        return 0
    return int(
        conn.execute(
            preference_links.delete().where(preference_links.c.profile_id.in_(sorted(profile_ids)))
        ).rowcount
    )
