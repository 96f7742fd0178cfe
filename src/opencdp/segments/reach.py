"""Reach: before an export, how many of a segment's members it will contain and why not more.

Three filters stand between a segment and an export file: membership, having the identifier the
channel needs (an e-mail address to e-mail someone, a phone number to text them), and consent to
the purpose (opt-in, docs/privacy.md). One set-based query counts all of them at once, so the
dashboard, the API and the CLI can say "254 members · 241 with an e-mail · 198 consented to
email_marketing → 198 rows" before anything is downloaded, and an empty export can say why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from opencdp.privacy.consent import ConsentError, require_purpose
from opencdp.segments.store import get
from opencdp.store.dialect import json_bool
from opencdp.store.schema import identities, profiles, segment_memberships

#: What an export can be for → the identifier type every row then needs (None: no identifier).
CHANNELS: dict[str, str | None] = {"email": "email", "sms": "phone", "any": None}
IDENTIFIER_WORDS = {"email": "an e-mail address", "phone": "a phone number"}


def channel_for(purpose: str) -> str:
    """The channel a purpose most likely means (email_marketing → email, sms → sms), else any."""
    words = set(purpose.lower().replace("-", "_").split("_"))
    if words & {"email", "e", "mail", "newsletter", "newsletters"}:
        return "email"
    if words & {"sms", "text", "phone", "mobile"}:
        return "sms"
    return "any"


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise ConsentError(f"unknown channel {channel!r}; choose one of: {', '.join(CHANNELS)}")
    return channel


@dataclass(frozen=True)
class Reach:
    segment: str
    purpose: str
    channel: str
    identifier: str | None  # the identifier type the channel needs
    members: int  # current members
    with_identifier: int  # …of them with that identifier (= members when none is needed)
    consented: int  # …of them who consented to the purpose (with or without the identifier)
    rows: int  # with the identifier and consented: the rows an export will have

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def header(self) -> str:
        """For the `X-OpenCDP-Reach` header of an export: `members=254, with_identifier=241,
        consented=198, rows=198`. Counted just before the file streams, so a change in the
        meantime can make the file differ by a few rows."""
        counts = {k: getattr(self, k) for k in ("members", "with_identifier", "consented", "rows")}
        return ", ".join(f"{k}={v}" for k, v in counts.items())


def has_identifier(identifier: str) -> sa.ColumnElement[bool]:
    """The member has at least one identifier of this type (for WHERE clauses on memberships)."""
    return sa.exists().where(
        identities.c.profile_id == segment_memberships.c.profile_id, identities.c.type == identifier
    )


def reach(engine: sa.Engine, name: str, purpose: str, channel: str | None = None) -> Reach:
    """Counts of current members by identifier and consent, in one query over the memberships."""
    segment = get(engine, name)
    with engine.connect() as conn:
        purpose = require_purpose(conn, purpose)
        channel = check_channel(channel or channel_for(purpose))
        identifier = CHANNELS[channel]
        consented = json_bool(profiles.c.consent, purpose) == sa.true()  # as queries._consented
        reachable = has_identifier(identifier) if identifier else sa.true()

        def counted(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

        row = conn.execute(
            sa.select(
                sa.func.count(),
                counted(reachable),
                counted(consented),
                counted(sa.and_(reachable, consented)),
            )
            .select_from(
                segment_memberships.outerjoin(profiles, profiles.c.id == segment_memberships.c.profile_id)
            )
            .where(segment_memberships.c.segment_id == segment.id, segment_memberships.c.exited_at.is_(None))
        ).one()
    members, with_identifier, consenting, rows = (int(n) for n in row)
    return Reach(segment.name, purpose, channel, identifier, members, with_identifier, consenting, rows)


def summary(found: Reach, number: Callable[[int], str] = str) -> str:
    """One line: "254 members · 241 with an e-mail address · 198 consented to email_marketing →
    198 rows". `number` formats a count (the dashboard passes the viewer's locale)."""
    parts = [f"{number(found.members)} members"]
    if found.identifier:
        parts.append(f"{number(found.with_identifier)} with {IDENTIFIER_WORDS[found.identifier]}")
    parts.append(f"{number(found.consented)} consented to {found.purpose}")
    rows = "1 row" if found.rows == 1 else f"{number(found.rows)} rows"
    return " · ".join(parts) + f" → {rows}"


def empty_reason(found: Reach, number: Callable[[int], str] = str) -> str | None:
    """Why an export would have no rows, naming the filter that left nobody; None if it has rows."""
    if found.rows:
        return None
    if not found.members:
        return f"Segment {found.segment!r} has no members at the moment."
    of = f"of {number(found.members)} members"
    if found.identifier and not found.with_identifier:
        return f"None {of} has {IDENTIFIER_WORDS[found.identifier]}."
    if not found.consented:
        return f"0 {of} consented to {found.purpose}."
    words = IDENTIFIER_WORDS.get(found.identifier or "", "")
    return (
        f"{number(found.consented)} {of} consented to {found.purpose}, but none of them has {words}; "
        f"the {number(found.with_identifier)} members with {words} did not consent."
    )
