"""A profile's sessions, read from its processed events (`profile_events`) with the part of each
event's context a session's entry needs (campaign and page, from the log's payload).

One query per profile: `profile_events` by (profile_id, ts) — the `ix_profile_events_profile_ts`
index — joined by primary key to the log for only `context.campaign` and `context.page`, and of
the properties only those the entry reads. The
session computed traits (`session_traits`) are worked out from the events the trait refresh has
already read (no query of their own: they run for every profile a processing chunk touches).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.personalise.sessions import (
    DEFAULT_GAP,
    Session,
    SessionEvent,
    activity,
    is_activity,
    split_sessions,
)
from opencdp.segments.oracle import OracleEvent
from opencdp.store.schema import events, profile_events

#: at most this many of a profile's newest events are read for its sessions
MAX_EVENTS = 5000
SESSION_WINDOW = timedelta(days=30)
#: the event properties a session's entry reads (`Session.entry`)
ENTRY_PROPERTIES = ("path", "url", "referrer")
#: what a visitor does; identify, group and alias calls (often a CRM or a server) neither start
#: nor extend a session


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _context(campaign: Any, page: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(campaign, dict) and campaign:
        out["campaign"] = campaign
    if isinstance(page, dict) and page:
        out["page"] = page
    return out


def sessions_of(
    conn: sa.Connection,
    profile_id: str,
    since: datetime | None = None,
    limit: int = MAX_EVENTS,
    gap: timedelta = DEFAULT_GAP,
    all_properties: bool = False,
) -> list[Session]:
    """The profile's sessions in time order (oldest first), from its newest `limit` events at or
    after `since`. A session that began before `since` (or before the oldest event read) is cut
    there: its first events, and so its entry, are not known.

    Events carry only the properties a session's entry reads (`path`, `url`, `referrer`) unless
    `all_properties`."""
    campaign = events.c.payload[("context", "campaign")]
    page = events.c.payload[("context", "page")]
    props = (
        [profile_events.c.properties]
        if all_properties
        else [profile_events.c.properties[key].label(f"p_{key}") for key in ENTRY_PROPERTIES]
    )
    query = (
        sa.select(
            profile_events.c.ts,
            profile_events.c.type,
            profile_events.c.name,
            *props,
            campaign.label("campaign"),
            page.label("page"),
        )
        .select_from(profile_events.outerjoin(events, events.c.id == profile_events.c.event_id))
        .where(
            profile_events.c.profile_id == profile_id, activity(profile_events.c.type, profile_events.c.name)
        )
        .order_by(profile_events.c.ts.desc(), profile_events.c.event_id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(profile_events.c.ts >= since)
    rows = conn.execute(query).all()
    found = [
        SessionEvent(r.ts, r.type, r.name, _properties(r, all_properties), _context(r.campaign, r.page))
        for r in reversed(rows)
    ]
    return split_sessions(found, gap)


def _properties(row: Any, everything: bool) -> dict[str, Any]:
    if everything:
        return _object(row.properties)
    return {key: value for key in ENTRY_PROPERTIES if (value := getattr(row, f"p_{key}")) is not None}


def session_json(session: Session) -> dict[str, Any]:
    """A session's summary with its events (name, type, time and the page path) for the API."""
    return {
        **session.summary(),
        "items": [
            {
                "ts": e.ts.isoformat(),
                "type": e.type,
                "name": e.name,
                "path": page_path(e),
            }
            for e in session.events
        ],
    }


def page_path(event: SessionEvent) -> str | None:
    """The path of a page/screen event (context.page.path, else properties.path or url)."""
    if event.type not in ("page", "screen"):
        return None
    probe = Session(1, event.ts, event.ts, [event])
    return probe.entry()["landing_path"]


def session_traits(
    events_of: Sequence[OracleEvent], now: datetime, gap: timedelta = DEFAULT_GAP
) -> dict[str, Any]:
    """The session computed traits of one profile, from the events the trait refresh has read."""
    visits = (e for e in events_of if e.ts <= now and is_activity(e.type, e.name))
    sessions = split_sessions((SessionEvent(e.ts, e.type, e.name, e.properties) for e in visits), gap)
    if not sessions:
        return {"sessions_30_days": 0}
    recent = [s for s in sessions if s.started_at >= now - SESSION_WINDOW]
    values: dict[str, Any] = {
        "sessions_30_days": len(recent),
        "last_session_started_at": sessions[-1].started_at.isoformat().replace("+00:00", "Z"),
    }
    if recent:
        values["avg_session_seconds_30_days"] = round(
            sum(s.duration_seconds for s in recent) / len(recent), 1
        )
    return values
