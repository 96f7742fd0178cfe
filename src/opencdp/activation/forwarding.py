"""Event forwarding (Segment's "Connections"): events, filtered, sent to a destination as they are
processed. A rule forwards the events collected after it was made; the processor writes the
decisions in the transaction that applies the events (`emit`), and a high-water mark that a
rebuild does not reset keeps a re-processed log from being forwarded twice.

A filter (every part optional; all given parts must match):

    {"sources": ["web"], "types": ["track"], "events": ["Order Completed"],
     "where": [{"property": "total", "op": "gte", "value": 100}]}

`where` uses the segment language's property conditions, on a track's properties, an identify's
traits, a page's or screen's properties.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opencdp.activation import outbox
from opencdp.activation.destinations import DestinationError, get_row
from opencdp.segments.language import PropertyCondition
from opencdp.segments.oracle import value_matches
from opencdp.store.schema import events, forwarding_rules

MARK = "forwarded_through"
CallType = Literal["track", "identify", "page", "screen", "group", "alias"]


class EventFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] | None = Field(default=None, min_length=1)
    types: list[CallType] | None = Field(default=None, min_length=1)
    events: list[str] | None = Field(default=None, min_length=1)
    where: list[PropertyCondition] = Field(default_factory=list, max_length=50)

    def matches(self, call_type: str, source: str, payload: dict[str, Any]) -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        if self.types is not None and call_type not in self.types:
            return False
        if self.events is not None and (call_type != "track" or payload.get("event") not in self.events):
            return False
        if self.where:
            data = payload.get("traits" if call_type == "identify" else "properties")
            data = data if isinstance(data, dict) else {}
            return all(value_matches(data, c.property, c) for c in self.where)
        return True


def parse_filter(document: Any) -> EventFilter:
    try:
        return EventFilter.model_validate(document or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("filter", *first["loc"]))
        raise DestinationError(where, first["msg"]) from None


def create_rule(conn: sa.Connection, name: str, destination_id: int, document: Any) -> int:
    name = name.strip()
    if not name or len(name) > 200:
        raise DestinationError("name", "give a name of 1 to 200 characters")
    get_row(conn, destination_id)
    parsed = parse_filter(document)
    if conn.execute(sa.select(forwarding_rules.c.id).where(forwarding_rules.c.name == name)).first():
        raise DestinationError("name", f"a forwarding rule named {name!r} exists", 409)
    newest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one()
    return int(
        conn.execute(
            forwarding_rules.insert().values(
                name=name,
                destination_id=destination_id,
                filter=parsed.model_dump(exclude_none=True, exclude_defaults=True),
                enabled=True,
                after_event_id=newest,
                created_at=datetime.now(UTC),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )


def delete_rule(conn: sa.Connection, rule_id: int) -> None:
    """Stop forwarding; deliveries already decided still go (or are dead-lettered) as usual."""
    if conn.execute(forwarding_rules.delete().where(forwarding_rules.c.id == rule_id)).rowcount == 0:
        raise DestinationError("rule", f"no forwarding rule with id {rule_id}", 404)


def list_rules(conn: sa.Connection) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "name": r.name,
            "destination_id": r.destination_id,
            "filter": r.filter,
            "enabled": r.enabled,
            "created_at": r.created_at.isoformat(),
        }
        for r in conn.execute(sa.select(forwarding_rules).order_by(forwarding_rules.c.name))
    ]


def emit(conn: sa.Connection, batch: Sequence[Any], event_profiles: dict[int, str]) -> int:
    """Decide, in the processing transaction, which of these events go where; returns how many
    deliveries were written. `batch` rows have id, type, source (name) and payload."""
    rules = conn.execute(
        sa.select(
            forwarding_rules.c.id,
            forwarding_rules.c.destination_id,
            forwarding_rules.c.filter,
            forwarding_rules.c.after_event_id,
        ).where(forwarding_rules.c.enabled.is_(True))
    ).all()
    if not rules or not batch:
        return 0
    mark = outbox.read_mark(conn, MARK) or 0
    parsed = [(r, EventFilter.model_validate(r.filter)) for r in rules]
    now = datetime.now(UTC)
    rows = [
        outbox.decision(
            rule.destination_id,
            f"fwd-{rule.id}-{event.id}",
            "event",
            {"rule": rule.id},
            event_profiles.get(event.id),
            event.id,
            now,
        )
        for event in batch
        if event.id > mark
        for rule, test in parsed
        if event.id > rule.after_event_id and test.matches(event.type, event.source, event.payload)
    ]
    outbox.write(conn, rows)
    outbox.set_mark(conn, MARK, max(mark, batch[-1].id))
    return len(rows)
