"""Quiet events: the system's own track events that no definition reads change no derived state.

The decide API logs an `Experience Viewed` for each visitor's first exposure to an experience's arm:
up to one event per placement of a page view, more than the visitor's own events. Each one touches
its profile, and refreshing a touched profile's computed traits and memberships is most of what
processing an event costs. Such an event adds a row to `profile_events` and moves `last_seen`, and
nothing else: no traits, no consent, not activity for the session traits. So a profile whose only
changes in a chunk are quiet events keeps its derived state, unless a segment or a computed trait
reads that event name (a segment "saw the winter hero", say), which is checked against the
definitions as they are when the chunk is processed. A profile the chunk created, merged or
relinked is never quiet (`Chunk.changed`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opencdp.personalise.sessions import NOT_ACTIVITY
from opencdp.privacy.consent import extract_consent
from opencdp.segments.language import EventCondition, leaves, parse_criteria
from opencdp.store.schema import segments
from opencdp.traits.store import definitions

#: The system's own events, none of them the visitor's activity (personalise/sessions.py).
QUIET_EVENTS = frozenset(NOT_ACTIVITY)


def quiet_name(call_type: str, payload: dict[str, Any]) -> str | None:
    """The event's name if it is quiet: a system track event carrying no traits and no consent."""
    if call_type != "track":
        return None
    name = payload.get("event")
    if name not in QUIET_EVENTS or payload.get("traits") or extract_consent(payload):
        return None
    context = payload.get("context")
    if isinstance(context, dict) and context.get("traits"):
        return None
    return str(name)


def read_by_definitions(conn: sa.Connection, names: set[str]) -> set[str]:
    """Those of `names` that a segment or a computed trait reads (all of them when a definition
    reads every track event, or a stored segment no longer parses)."""
    read: set[str] = set()
    for trait in definitions(conn):
        types = trait.filter.types
        if types is not None and "track" not in types:
            continue
        if trait.filter.event is None:
            return set(names)
        if trait.filter.event in names:
            read.add(trait.filter.event)
    for (criteria,) in conn.execute(sa.select(segments.c.criteria)):
        try:
            conditions = [c for c in leaves(parse_criteria(criteria)) if isinstance(c, EventCondition)]
        except ValueError:
            return set(names)
        # a segment reference is checked with the segment it names: every segment is in this loop
        for cond in conditions:
            if cond.type not in (None, "track"):
                continue
            if cond.event is None:
                return set(names)
            if cond.event in names:
                read.add(cond.event)
    return read
