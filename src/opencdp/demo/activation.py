"""The demo's activation: the seed journeys and a forwarding rule, all sending to a file
destination in the data folder (nothing to install, nothing leaves the machine), so that after
`opencdp demo` there are journeys with profiles on their way and files of deliveries to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opencdp.activation.destinations import DestinationSpec, create
from opencdp.activation.forwarding import create_rule
from opencdp.journeys import store as journeys
from opencdp.segments.store import save as save_segment
from opencdp.store.schema import destinations, forwarding_rules, segments

OUTBOX = "demo outbox"

SEGMENTS: dict[str, Any] = {
    "shoe intent": {
        "event": "Product Viewed",
        "where": [{"property": "category", "op": "eq", "value": "shoes"}],
        "count": {"op": "gte", "value": 3},
    },
    "email ignorers": {
        "and": [
            {"event": "Email Delivered", "count": {"op": "gte", "value": 10}},
            {"not": {"event": "Email Opened"}},
        ]
    },
}


def _send(step: str, channel: str, **content: Any) -> dict[str, Any]:
    return {"id": step, "send": {"destination": OUTBOX, "channel": channel, "content": content}}


JOURNEYS: dict[str, Any] = {
    "abandoned checkout": {
        "entry": {"event": "Checkout Started"},
        "goal": {"event": "Order Completed"},
        "reentry": {"after_days": 1},
        "steps": [
            {"id": "grace", "wait": {"hours": 2}},
            _send("coupon mail", "email", subject="Forgot something?", coupon="CART25", discount=25),
            {"id": "two days", "wait": {"days": 2}},
            {"id": "to ads", "tag": {"add": "abandoned_checkout"}},
        ],
    },
    "weekly shoes digest": {
        "entry": {
            "schedule": {"every": "week", "day": "monday", "at": "09:00", "timezone": "Europe/Berlin"},
            "audience": "shoe intent",
        },
        "reentry": {"after_days": 6},
        "steps": [_send("digest", "email", subject="New in shoes this week")],
    },
    "switch channel": {
        "entry": {"segment": "email ignorers"},
        "steps": [
            _send("sms", "sms", text="20% off this weekend - reply STOP to opt out"),
            {"id": "prefer sms", "set_traits": {"preferred_channel": "sms"}},
        ],
    },
    "welcome series": {
        "entry": {"event": "Signed Up"},
        "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"},
        "caps": {"per_channel": {"email": {"max": 2, "days": 7}}},
        "steps": [
            _send("welcome", "email", subject="Welcome to the shop"),
            {
                "id": "opened?",
                "wait_for": {
                    "event": "Email Opened",
                    "within": {"days": 2},
                    "then": "offer",
                    "timeout": "reminder",
                },
            },
            {**_send("reminder", "email", subject="Did you see our welcome?"), "next": "exit"},
            _send("offer", "email", subject="10% for new readers"),
        ],
    },
}


def setup_demo_activation(engine: sa.Engine, settings: Any) -> Path:
    """Create (once) the file destination, the segments and journeys above, active; returns the
    folder the deliveries are written to."""
    folder = Path(settings.data_dir).resolve() / "outbox"
    with engine.begin() as conn:
        dest = conn.execute(sa.select(destinations.c.id).where(destinations.c.name == OUTBOX)).scalar()
        if dest is None:
            dest = create(
                conn,
                settings,
                DestinationSpec(
                    OUTBOX, "file", {"folder": str(folder), "format": "jsonl", "every_seconds": 60}
                ),
            )
        if not conn.execute(
            sa.select(forwarding_rules.c.id).where(forwarding_rules.c.name == "orders")
        ).first():
            create_rule(conn, "orders", dest, {"events": ["Order Completed"]})
        known = set(conn.execute(sa.select(segments.c.name)).scalars())
    for name, criteria in SEGMENTS.items():
        if name not in known:
            save_segment(engine, name, criteria, description="demo: used by a journey")
    with engine.begin() as conn:
        for name, definition in JOURNEYS.items():
            try:
                journey_id = journeys.find_id(conn, name)
            except journeys.JourneyError:
                journey_id = int(journeys.save(conn, name, definition, "demo", actor="demo")["id"])
            journeys.set_status(conn, journey_id, "active")
    return folder
