"""A small shop for the segment-performance view: segments gold and silver, two categories, with
known conversion (relative to the current time, so the default window holds it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.segments.store import save
from tests.identity_helpers import log_messages, process


def fill(engine: sa.Engine, now: datetime | None = None) -> datetime:
    """gold (100): shoes viewed by all, 40 order them (100 each); bags viewed by 50, 10 order them
    (30 each, named only in `products`). silver (100): shoes viewed by all, 5 order them; 5 more
    ordered shoes before viewing (not counted). Returns the moment used as now."""
    now = now or datetime.now(UTC)
    t0 = now - timedelta(days=10)
    messages: list[dict[str, Any]] = []

    def add(user: str, at: datetime, event: str | None, **fields: Any) -> None:
        body: dict[str, Any] = {
            "userId": user,
            "messageId": f"{user}-{len(messages)}",
            "timestamp": at.isoformat(),
        }
        body |= {"type": "track", "event": event} if event else {"type": "identify"}
        messages.append(body | fields)

    for i in range(200):
        gold = i < 100
        user = f"p-{i:03d}"
        add(user, t0 - timedelta(hours=3), None, traits={"tier": "gold" if gold else "silver"})
        add(user, t0, "Product Viewed", properties={"product_id": "sho-1", "category": "shoes"})
        shoes = i % 10 < 4 if gold else i % 20 == 0
        if shoes:
            add(
                user,
                t0 + timedelta(hours=1),
                "Order Completed",
                properties={"revenue": 100.0, "category": "shoes"},
            )
        if not gold and i % 20 == 1:
            add(
                user,
                t0 - timedelta(hours=1),
                "Order Completed",
                properties={"revenue": 100.0, "category": "shoes"},
            )
        if gold and i < 50:
            add(
                user,
                t0 + timedelta(minutes=5),
                "Product Viewed",
                properties={"product_id": "bag-1", "category": "bags"},
            )
            if i % 5 == 0:
                props = {"revenue": 30.0, "products": [{"product_id": "bag-1", "category": "bags"}]}
                add(user, t0 + timedelta(hours=2), "Order Completed", properties=props)
    log_messages(engine, messages)
    for tier in ("gold", "silver"):
        save(engine, tier, {"trait": "tier", "op": "eq", "value": tier}, replace=True)
    process(engine)
    return now
