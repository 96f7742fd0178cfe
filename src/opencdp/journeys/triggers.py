"""What processing decides for journeys, in its own transaction: who enters (an event, a segment
change, a computed-trait change), who leaves (an exit event, the goal) and whose awaited event
has come. A high-water mark that a rebuild does not reset keeps a re-processed log from entering
anyone twice; a journey only reacts to events logged after it was activated."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from opencdp.activation import outbox
from opencdp.journeys.definition import (
    EventMatch,
    JourneyDefinition,
    Reentry,
    SegmentEntry,
    StrugglingEntry,
    TraitEntry,
    WaitForStep,
    parse_definition,
)
from opencdp.personalise.forms import DEFAULT_RULE, FIELD_ERRORED, FORM_EVENTS, struggling
from opencdp.personalise.sessions import SessionEvent
from opencdp.segments.compiler import members_query
from opencdp.segments.language import parse_criteria
from opencdp.segments.oracle import value_matches
from opencdp.segments.store import lookup_in
from opencdp.store.schema import (
    journey_history,
    journey_instances,
    journeys,
    profile_events,
    profiles,
    segments,
)

MARK = "journeys_through"
_parsed: dict[bytes, JourneyDefinition] = {}


def definition_of(journey_id: int, version: int, document: Any) -> JourneyDefinition:
    """The parsed definition, cached by its content (ids repeat across databases and rebuilds)."""
    key = orjson.dumps([journey_id, version, document], option=orjson.OPT_SORT_KEYS)
    found = _parsed.get(key)
    if found is None:
        if len(_parsed) > 1000:
            _parsed.clear()
        found = _parsed[key] = parse_definition(document)
    return found


def active_journeys(conn: sa.Connection) -> list[tuple[Any, JourneyDefinition]]:
    rows = conn.execute(
        sa.select(journeys).where(journeys.c.status == "active").order_by(journeys.c.id)
    ).all()
    return [(r, definition_of(r.id, r.version, r.definition)) for r in rows]


def matches(match: EventMatch | dict[str, Any], event_name: Any, properties: Any) -> bool:
    if isinstance(match, dict):  # an awaited event, as stored on the instance
        match = EventMatch.model_validate({"event": match["event"], "where": match.get("where", [])})
    if event_name != match.event:
        return False
    data = properties if isinstance(properties, dict) else {}
    return all(value_matches(data, c.property, c) for c in match.where)


def history_row(
    inst_id: int, journey_id: int, pid: str, step: str | None, action: str, at: datetime, **detail: Any
) -> dict[str, Any]:
    channel = detail.pop("channel", None)
    return {
        "instance_id": inst_id,
        "journey_id": journey_id,
        "profile_id": pid,
        "step": step,
        "action": action,
        "channel": channel,
        "at": at,
        "detail": detail,
    }


def on_events(conn: sa.Connection, batch: Sequence[Any], event_profiles: dict[int, str]) -> None:
    """Entries, exits, goals and awaited events for a processed chunk (its transaction)."""
    active = active_journeys(conn)
    if not active or not batch:
        return
    mark = outbox.read_mark(conn, MARK) or 0
    outbox.set_mark(conn, MARK, max(mark, batch[-1].id))
    fresh = [e for e in batch if e.id > mark and e.type == "track" and e.id in event_profiles]
    if not fresh:
        return
    now = datetime.now(UTC)
    watching = {
        r.id: d for r, d in active if d.goal or d.exit_on or any(isinstance(s, WaitForStep) for s in d.steps)
    }
    if watching:
        _move_instances(conn, fresh, event_profiles, watching, now)
    strugglers = [(r, d) for r, d in active if isinstance(d.entry, StrugglingEntry)]
    if strugglers:
        _on_struggles(conn, fresh, event_profiles, strugglers, now)
    for row, definition in active:
        entry = definition.entry
        if not isinstance(entry, EventMatch):
            continue
        entering = [
            event_profiles[e.id]
            for e in fresh
            if e.id > row.after_event_id
            and matches(entry, e.payload.get("event"), e.payload.get("properties"))
        ]
        if not entering:
            continue
        entered = set(enrol(conn, row, definition, entering, now, {"event": entry.event}))
        if entered and (definition.goal or definition.exit_on):
            # the order that follows the checkout in the same chunk (a backfill, a burst) ends the
            # instance that checkout just began, as it would have one chunk later
            later, began = [], set()
            for e in fresh:
                pid = event_profiles[e.id]
                if pid not in entered:
                    continue
                if pid in began:
                    later.append(e)
                elif e.id > row.after_event_id and matches(
                    entry, e.payload.get("event"), e.payload.get("properties")
                ):
                    began.add(pid)
            if later:
                _move_instances(conn, later, event_profiles, {row.id: definition}, now)


def _on_struggles(
    conn: sa.Connection,
    fresh: list[Any],
    event_profiles: dict[int, str],
    strugglers: list[tuple[Any, JourneyDefinition]],
    now: datetime,
) -> None:
    """Profiles whose `Form Field Errored` in this chunk makes them struggle (`forms.struggling` over
    their form events up to that error, this chunk's included: they are in `profile_events` by now)
    enter the journeys that start on struggling (with that form, if one is named)."""
    errors = [e for e in fresh if e.payload.get("event") == FIELD_ERRORED]
    if not errors:
        return
    by_id = {e.id: e for e in errors}
    times = dict(
        conn.execute(
            sa.select(profile_events.c.event_id, profile_events.c.ts).where(
                profile_events.c.event_id.in_(sorted(by_id))
            )
        ).all()
    )
    span = DEFAULT_RULE.window + DEFAULT_RULE.dwell
    found: list[tuple[int, str, str]] = []  # (event id, profile, form)
    for event_id, at in sorted(times.items()):
        pid = event_profiles[event_id]
        rows = conn.execute(
            sa.select(
                profile_events.c.ts, profile_events.c.type, profile_events.c.name, profile_events.c.properties
            )
            .where(
                profile_events.c.profile_id == pid,
                profile_events.c.name.in_(FORM_EVENTS),
                profile_events.c.ts >= at - span,
                profile_events.c.ts <= at,
            )
            .order_by(profile_events.c.ts, profile_events.c.event_id)
        ).all()
        events = [
            SessionEvent(r.ts, r.type, r.name, r.properties if isinstance(r.properties, dict) else {})
            for r in rows
        ]
        struggle = struggling(events, at)
        if struggle is not None and struggle.reason == "errors":
            found.append((event_id, pid, struggle.form_id))
    for row, definition in strugglers:
        entry = definition.entry
        assert isinstance(entry, StrugglingEntry)
        wanted = entry.struggling.form_id
        by_form: dict[str, list[str]] = {}
        for event_id, pid, form in found:
            if event_id > row.after_event_id and (wanted is None or form == wanted):
                by_form.setdefault(form, []).append(pid)
        for form, pids in by_form.items():
            enrol(conn, row, definition, pids, now, {"struggling": form})


def _move_instances(
    conn: sa.Connection,
    fresh: list[Any],
    event_profiles: dict[int, str],
    watching: dict[int, JourneyDefinition],
    now: datetime,
) -> None:
    pids = {event_profiles[e.id] for e in fresh}
    # instances entered under a profile that has since merged into one of these
    merged = {
        r.id: r.merged_into
        for r in conn.execute(
            sa.select(profiles.c.id, profiles.c.merged_into).where(profiles.c.merged_into.in_(sorted(pids)))
        )
    }
    owners = pids | set(merged)
    instances = conn.execute(
        sa.select(journey_instances).where(
            journey_instances.c.status == "active",
            journey_instances.c.journey_id.in_(sorted(watching)),
            journey_instances.c.profile_id.in_(sorted(owners)),
        )
    ).all()
    if not instances:
        return
    by_profile: dict[str, list[Any]] = {}
    for inst in instances:
        by_profile.setdefault(merged.get(inst.profile_id, inst.profile_id), []).append(inst)
    changes: dict[int, dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    for event in fresh:
        name, props = event.payload.get("event"), event.payload.get("properties")
        for inst in by_profile.get(event_profiles[event.id], []):
            if inst.id in changes and changes[inst.id].get("status") == "done":
                continue
            definition = watching[inst.journey_id]
            waiting = changes.get(inst.id, {}).get("waiting_for", inst.waiting_for)
            if definition.goal and matches(definition.goal, name, props):
                changes[inst.id] = {
                    "status": "done",
                    "outcome": "converted",
                    "finished_at": now,
                    "waiting_for": None,
                }
                history.append(
                    history_row(inst.id, inst.journey_id, inst.profile_id, None, "converted", now, event=name)
                )
            elif any(matches(x, name, props) for x in definition.exit_on):
                changes[inst.id] = {
                    "status": "done",
                    "outcome": "exited",
                    "finished_at": now,
                    "waiting_for": None,
                }
                history.append(
                    history_row(inst.id, inst.journey_id, inst.profile_id, None, "exited", now, event=name)
                )
            elif waiting and matches(waiting, name, props):
                changes[inst.id] = {
                    "step": waiting["then"],
                    "next_at": now,
                    "waiting_for": None,
                    "at_step": None,
                }
                history.append(
                    history_row(
                        inst.id, inst.journey_id, inst.profile_id, waiting["step"], "event", now, event=name
                    )
                )
    for inst_id, values in changes.items():
        conn.execute(journey_instances.update().where(journey_instances.c.id == inst_id).values(**values))
    if history:
        conn.execute(journey_history.insert(), history)


def on_segment_change(
    conn: sa.Connection, segment_id: int, entered: Sequence[str], exited: Sequence[str], now: datetime
) -> None:
    """Profiles entering or leaving a segment enter the journeys that start on it."""
    if not entered and not exited:
        return
    active = [(r, d) for r, d in active_journeys(conn) if isinstance(d.entry, SegmentEntry)]
    if not active:
        return
    name = conn.execute(sa.select(segments.c.name).where(segments.c.id == segment_id)).scalar()
    for row, definition in active:
        entry = definition.entry
        assert isinstance(entry, SegmentEntry)
        if entry.segment == name:
            who = entered if entry.on == "entered" else exited
            if who:
                enrol(conn, row, definition, who, now, {"segment": name, "change": entry.on})


def watched_traits(conn: sa.Connection) -> set[str]:
    """Computed traits whose changes some active journey starts on (nothing to compare if none)."""
    return {d.entry.computed for _, d in active_journeys(conn) if isinstance(d.entry, TraitEntry)}


def on_trait_changes(
    conn: sa.Connection, changes: dict[str, dict[str, tuple[Any, Any]]], now: datetime
) -> None:
    """`changes`: profile → computed trait → (before, after), for the watched traits that changed."""
    for row, definition in active_journeys(conn):
        entry = definition.entry
        if not isinstance(entry, TraitEntry):
            continue
        who = [
            pid
            for pid, traits in changes.items()
            if entry.computed in traits and (entry.to is None or traits[entry.computed][1] == entry.to)
        ]
        if who:
            enrol(conn, row, definition, who, now, {"computed": entry.computed})


def enrol(
    conn: sa.Connection,
    journey: Any,
    definition: JourneyDefinition,
    profile_ids: Iterable[str],
    now: datetime,
    why: dict[str, Any],
) -> list[str]:
    """Let these profiles enter (those the criteria and the re-entry rule allow); returns those
    that entered."""
    wanted = sorted(set(profile_ids))
    if not wanted:
        return []
    if definition.criteria is not None:
        parsed, lookup = parse_criteria(definition.criteria), lookup_in(conn)
        allowed: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            allowed |= set(conn.execute(members_query(parsed, now, lookup, part)).scalars())
        wanted = [p for p in wanted if p in allowed]
    earlier: dict[str, list[Any]] = {}
    for start in range(0, len(wanted), 500):
        for r in conn.execute(
            sa.select(
                journey_instances.c.profile_id, journey_instances.c.status, journey_instances.c.entered_at
            ).where(
                journey_instances.c.journey_id == journey.id,
                journey_instances.c.profile_id.in_(wanted[start : start + 500]),
            )
        ):
            earlier.setdefault(r.profile_id, []).append(r)
    policy = definition.reentry

    def may_enter(pid: str) -> bool:
        before = earlier.get(pid, [])
        if any(r.status == "active" for r in before):
            return False  # never twice at once
        if policy == "once":
            return not before
        if isinstance(policy, Reentry):
            return all((now - r.entered_at).total_seconds() >= policy.after_days * 86400 for r in before)
        return True

    entering = [p for p in wanted if may_enter(p)]
    if not entering:
        return []
    first = definition.steps[0].id
    created = conn.execute(
        journey_instances.insert().returning(journey_instances.c.id, journey_instances.c.profile_id),
        [
            {
                "journey_id": journey.id,
                "version": journey.version,
                "profile_id": pid,
                "step": first,
                "status": "active",
                "next_at": now,
                "steps_done": 0,
                "entered_at": now,
            }
            for pid in entering
        ],
    ).all()
    conn.execute(
        journey_history.insert(),
        [history_row(r.id, journey.id, r.profile_id, None, "entered", now, **why) for r in created],
    )
    return [r.profile_id for r in created]
