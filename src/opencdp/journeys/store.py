"""Journeys as data: saved (each change a new version, the old ones kept), activated, paused,
deleted, and counted (where profiles are, what was sent, conversions to the goal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.journeys.definition import (
    JourneyDefinition,
    JourneyDefinitionError,
    ScheduleEntry,
    SegmentEntry,
    SendStep,
    parse_definition,
)
from opencdp.journeys.schedule import next_occurrence
from opencdp.store.schema import (
    destinations,
    events,
    journey_history,
    journey_instances,
    journey_versions,
    journeys,
    profiles,
    segments,
)

STATUSES = ("draft", "active", "paused")


class JourneyError(ValueError):
    """A journey request that cannot be done; `field` names the offending input."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


def check(conn: sa.Connection, document: Any) -> JourneyDefinition:
    """Validate a definition, with what it names (segments, destinations) existing now."""
    try:
        journey = parse_definition(document)
    except JourneyDefinitionError as exc:
        first = exc.problems[0]
        raise JourneyError(f"definition.{first['path']}".rstrip("."), first["problem"]) from None
    known_segments = set(conn.execute(sa.select(segments.c.name)).scalars())
    entry = journey.entry
    if isinstance(entry, SegmentEntry) and entry.segment not in known_segments:
        raise JourneyError("definition.entry.segment", f"no segment named {entry.segment!r}")
    if isinstance(entry, ScheduleEntry) and entry.audience not in known_segments:
        raise JourneyError("definition.entry.audience", f"no segment named {entry.audience!r}")
    known_destinations = set(conn.execute(sa.select(destinations.c.name)).scalars())
    for i, step in enumerate(journey.steps):
        if isinstance(step, SendStep) and step.send.destination not in known_destinations:
            raise JourneyError(
                f"definition.steps.{i}.send.destination", f"no destination named {step.send.destination!r}"
            )
    return journey


def save(
    conn: sa.Connection, name: str, document: Any, description: str = "", actor: str = "api"
) -> dict[str, Any]:
    """Create a journey (as a draft) or change one (a new version; profiles on their way go on
    with the new definition from the step they are at, if it still exists, else they exit)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise JourneyError("name", "give a name of 1 to 200 characters")
    journey = check(conn, document)
    stored = journey.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    now = datetime.now(UTC)
    row = conn.execute(sa.select(journeys).where(journeys.c.name == name)).first()
    if row is None:
        journey_id = int(
            conn.execute(
                journeys.insert().values(
                    name=name,
                    description=description,
                    definition=stored,
                    version=1,
                    status="draft",
                    after_event_id=0,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        version = 1
    else:
        journey_id, version = row.id, row.version + 1
        values: dict[str, Any] = {
            "definition": stored,
            "version": version,
            "description": description,
            "updated_at": now,
        }
        if row.status == "active" and isinstance(journey.entry, ScheduleEntry):
            values["next_run_at"] = next_occurrence(journey.entry.schedule, now)
        conn.execute(journeys.update().where(journeys.c.id == journey_id).values(**values))
    conn.execute(
        journey_versions.insert().values(
            journey_id=journey_id, version=version, definition=stored, created_at=now, created_by=actor
        )
    )
    return get(conn, journey_id)


def set_status(conn: sa.Connection, journey_id: int, status: str) -> dict[str, Any]:
    """Activate (profiles enter from events logged after now), pause (no one enters or moves
    on; waits keep counting) or put back to draft."""
    if status not in STATUSES:
        raise JourneyError("status", f"one of {', '.join(STATUSES)}")
    row = _row(conn, journey_id)
    values: dict[str, Any] = {"status": status, "updated_at": datetime.now(UTC)}
    if status == "active" and row.status != "active":
        check(conn, row.definition)  # what it names may have gone since it was saved
        values["after_event_id"] = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))
        ).scalar_one()
        definition = parse_definition(row.definition)
        if isinstance(definition.entry, ScheduleEntry):
            values["next_run_at"] = next_occurrence(definition.entry.schedule, datetime.now(UTC))
    conn.execute(journeys.update().where(journeys.c.id == journey_id).values(**values))
    return get(conn, journey_id)


def delete(conn: sa.Connection, journey_id: int) -> None:
    """Remove a journey with its versions, instances and history (sent messages stay sent)."""
    _row(conn, journey_id)
    for table, column in (
        (journey_history, journey_history.c.journey_id),
        (journey_instances, journey_instances.c.journey_id),
        (journey_versions, journey_versions.c.journey_id),
        (journeys, journeys.c.id),
    ):
        conn.execute(table.delete().where(column == journey_id))


def _row(conn: sa.Connection, journey_id: int) -> sa.Row[Any]:
    row = conn.execute(sa.select(journeys).where(journeys.c.id == journey_id)).first()
    if row is None:
        raise JourneyError("journey", f"no journey with id {journey_id}", 404)
    return row


def find_id(conn: sa.Connection, name_or_id: str | int) -> int:
    text = str(name_or_id)
    if text.isdigit() and conn.execute(sa.select(journeys.c.id).where(journeys.c.id == int(text))).first():
        return int(text)
    found = conn.execute(sa.select(journeys.c.id).where(journeys.c.name == text)).scalar()
    if found is None:
        raise JourneyError("journey", f"no journey named {text!r}", 404)
    return int(found)


def get(conn: sa.Connection, journey_id: int) -> dict[str, Any]:
    row = _row(conn, journey_id)
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "version": row.version,
        "definition": row.definition,
        "next_run_at": row.next_run_at.isoformat() if row.next_run_at else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "stats": stats(conn, journey_id),
    }


def list_all(conn: sa.Connection) -> list[dict[str, Any]]:
    ids = list(conn.execute(sa.select(journeys.c.id).order_by(journeys.c.name)).scalars())
    return [get(conn, i) for i in ids]


def versions(conn: sa.Connection, journey_id: int) -> list[dict[str, Any]]:
    _row(conn, journey_id)
    return [
        {
            "version": r.version,
            "definition": r.definition,
            "created_at": r.created_at.isoformat(),
            "by": r.created_by,
        }
        for r in conn.execute(
            sa.select(journey_versions)
            .where(journey_versions.c.journey_id == journey_id)
            .order_by(journey_versions.c.version.desc())
        )
    ]


def stats(conn: sa.Connection, journey_id: int) -> dict[str, Any]:
    """Entered, active, per outcome, conversion rate, and per step: profiles there now and what
    happened there (sent, capped, …)."""
    by_outcome: dict[str, int] = dict(
        conn.execute(
            sa.select(sa.func.coalesce(journey_instances.c.outcome, "active"), sa.func.count())
            .where(journey_instances.c.journey_id == journey_id)
            .group_by(journey_instances.c.outcome)
        ).all()
    )
    here = sa.func.coalesce(journey_instances.c.at_step, journey_instances.c.step)  # in a wait: the wait
    at_step: dict[str, int] = dict(
        conn.execute(
            sa.select(here, sa.func.count())
            .where(journey_instances.c.journey_id == journey_id, journey_instances.c.status == "active")
            .group_by(here)
        ).all()
    )
    steps: dict[str, dict[str, int]] = {}
    for step, action, n in conn.execute(
        sa.select(journey_history.c.step, journey_history.c.action, sa.func.count())
        .where(journey_history.c.journey_id == journey_id, journey_history.c.step.is_not(None))
        .group_by(journey_history.c.step, journey_history.c.action)
    ):
        steps.setdefault(step, {})[action] = n
    for step, n in at_step.items():
        steps.setdefault(step, {})["now_here"] = n
    entered = sum(by_outcome.values())
    converted = by_outcome.get("converted", 0)
    return {
        "entered": entered,
        "active": by_outcome.get("active", 0),
        "completed": by_outcome.get("completed", 0),
        "exited": by_outcome.get("exited", 0),
        "converted": converted,
        "conversion_rate": round(converted / entered, 4) if entered else None,
        "steps": steps,
    }


def profile_journeys(conn: sa.Connection, profile_id: str) -> list[dict[str, Any]]:
    """A profile's journeys, each with where it is and its history (the 360° view). Instances
    entered under a profile that has since merged into this one are its too (they keep the id
    they entered under; merges are flattened, so one hop finds them all)."""
    names = dict(conn.execute(sa.select(journeys.c.id, journeys.c.name)).all())
    owners = [
        profile_id,
        *conn.execute(sa.select(profiles.c.id).where(profiles.c.merged_into == profile_id)).scalars(),
    ]
    out = []
    for inst in conn.execute(
        sa.select(journey_instances)
        .where(journey_instances.c.profile_id.in_(owners))
        .order_by(journey_instances.c.id.desc())
        .limit(100)
    ):
        history = [
            {
                "step": h.step,
                "action": h.action,
                "channel": h.channel,
                "at": h.at.isoformat(),
                "detail": h.detail,
            }
            for h in conn.execute(
                sa.select(journey_history)
                .where(journey_history.c.instance_id == inst.id)
                .order_by(journey_history.c.id)
            )
        ]
        out.append(
            {
                "journey": names.get(inst.journey_id),
                "journey_id": inst.journey_id,
                "version": inst.version,
                "status": inst.status,
                "outcome": inst.outcome,
                "step": (inst.at_step or inst.step) if inst.status == "active" else None,
                "next_step": inst.step if inst.status == "active" else None,
                "next_at": inst.next_at.isoformat() if inst.status == "active" else None,
                "waiting_for": (inst.waiting_for or {}).get("event"),
                "entered_at": inst.entered_at.isoformat(),
                "finished_at": inst.finished_at.isoformat() if inst.finished_at else None,
                "history": history,
            }
        )
    return out
