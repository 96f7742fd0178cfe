"""Sessions: a visitor's events split by inactivity (30 minutes by default, like Google Analytics).

A session is derived, never stored: the same function splits a profile's events for the 360° view,
the session computed traits and a live decision (whose current session also holds events the
processor has not reached yet). What a session started from (UTM campaign, referrer, landing page)
is read from its first event, as web analytics does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

DEFAULT_GAP = timedelta(minutes=30)
#: What a visitor does makes or extends a session; identify, group and alias (often a CRM import or
#: a server) do not.
SESSION_TYPES = ("track", "page", "screen")


@dataclass(frozen=True)
class SessionEvent:
    """What a session needs of one event (from `profile_events`, the log or a live request)."""

    ts: datetime
    type: str  # track, page, screen, identify, …
    name: str | None  # the track event's name, or the page's name
    properties: dict[str, Any] = field(default_factory=dict)
    #: the event's context (campaign, page, referrer), where known
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    """One visit: consecutive events with no gap longer than the inactivity limit."""

    number: int  # 1 for the first session of the events given
    started_at: datetime
    ended_at: datetime
    events: list[SessionEvent]

    @property
    def duration_seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def page_views(self) -> int:
        return sum(1 for e in self.events if e.type in ("page", "screen"))

    @property
    def landing(self) -> SessionEvent:
        return self.events[0]

    def entry(self) -> dict[str, str | None]:
        """Where the visit came from: the campaign (utm_*) of its first event that has one, the
        referrer of its first event that carries page information (later events' referrers are the
        site's own pages), and the landing page's path (its first page or screen)."""
        source = medium = campaign = referrer = landing_path = None
        have_campaign = have_referrer = False
        for event in self.events:
            ctx = event.context
            camp = _object(ctx.get("campaign"))
            page = _object(ctx.get("page"))
            props = event.properties
            is_page = event.type in ("page", "screen")
            if landing_path is None and is_page:
                landing_path = _text(page.get("path")) or _text(props.get("path")) or _path(props.get("url"))
            if not have_campaign and (camp.get("source") or camp.get("name")):
                have_campaign = True
                source = _text(camp.get("source"))
                medium = _text(camp.get("medium"))
                campaign = _text(camp.get("name"))
            if not have_referrer and (page or is_page):
                have_referrer = True
                referrer = _text(page.get("referrer")) or _text(props.get("referrer"))
            if have_campaign and have_referrer and landing_path:
                break
        return {
            "source": source,
            "medium": medium,
            "campaign": campaign,
            "referrer": referrer,
            "landing_path": landing_path,
        }

    def summary(self) -> dict[str, Any]:
        """JSON for the API and the 360° view."""
        return {
            "number": self.number,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 1),
            "events": len(self.events),
            "page_views": self.page_views,
            **self.entry(),
        }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _path(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def split_sessions(events: Iterable[SessionEvent], gap: timedelta = DEFAULT_GAP) -> list[Session]:
    """Sessions in time order (events are sorted by time first; ties keep their order)."""
    ordered = sorted(events, key=lambda e: e.ts)
    sessions: list[Session] = []
    for event in ordered:
        current = sessions[-1] if sessions else None
        if current is not None and event.ts - current.ended_at <= gap:
            current.events.append(event)
            current.ended_at = event.ts
        else:
            sessions.append(Session(len(sessions) + 1, event.ts, event.ts, [event]))
    return sessions


def current_session(
    events: Sequence[SessionEvent], now: datetime, gap: timedelta = DEFAULT_GAP
) -> Session | None:
    """The session still open at `now` (its last event at most `gap` ago), or None. Its `number`
    counts the sessions among the events given."""
    sessions = split_sessions([e for e in events if e.ts <= now], gap)
    if sessions and now - sessions[-1].ended_at <= gap:
        return sessions[-1]
    return None
