"""Segment performance: which segments convert badly in which product category.

Over a window (default the last 30 days), for each segment (current memberships) and product
category:
- **visitors**: profiles in the segment that viewed a product of the category (`Product Viewed`
  with property `category`);
- **converters**: those of them who ordered the category at or after their first view of it in the
  window (`Order Completed` whose `category` or one of whose `products[].category` is it);
- the **conversion rate** with its 95 % Wilson interval, and the converters' **revenue** for the
  category (an order's revenue is split evenly over the distinct categories it holds).

Each category also has an overall row (every viewer, whatever their segments). A cell is flagged
**low** when it has at least `min_visitors` visitors and the upper end of its interval is below the
category's overall rate: the segment converts significantly worse than the category's viewers as a
whole — the seed's "find the segments that convert badly and act on them".

The views and first-view moments are aggregated in SQL (GROUP BY profile, category); orders are read
once and their categories taken from the JSON in Python (a list inside the properties, which the two
engines would unnest differently).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.personalise.stats import wilson
from opencdp.store.dialect import json_text
from opencdp.store.schema import profile_events, profiles, segment_memberships, segments

VIEW_EVENT = "Product Viewed"
ORDER_EVENT = "Order Completed"
REVENUE_PROPERTIES = ("revenue", "total", "value")
DEFAULT_DAYS = 30.0
DEFAULT_MIN_VISITORS = 30
_DIGITS = 6


def _order_categories(properties: dict[str, Any]) -> set[str]:
    found = set()
    if isinstance(properties.get("category"), str):
        found.add(properties["category"])
    products = properties.get("products")
    if isinstance(products, list):
        for product in products:
            if isinstance(product, dict) and isinstance(product.get("category"), str):
                found.add(product["category"])
    return found


def _order_revenue(properties: dict[str, Any]) -> float:
    for name in REVENUE_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _r(value: float) -> float:
    return round(value, _DIGITS)


def _cell(visitors: int, converters: int, revenue: float) -> dict[str, Any]:
    interval = wilson(converters, visitors)
    return {
        "visitors": visitors,
        "converters": converters,
        "conversion_rate": _r(converters / visitors) if visitors else None,
        "conversion_low": _r(interval.low) if visitors else None,
        "conversion_high": _r(interval.high) if visitors else None,
        "revenue": _r(revenue),
    }


def segment_performance(
    engine: sa.Engine,
    *,
    days: float = DEFAULT_DAYS,
    min_visitors: int = DEFAULT_MIN_VISITORS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Conversion by segment x product category (see the module's docstring)."""
    if days <= 0:
        raise ValueError("days must be above 0")
    until = (now or datetime.now(UTC)).astimezone(UTC)
    since = until - timedelta(days=days)
    merged = sa.select(profiles.c.id).where(profiles.c.merged_into.is_not(None))
    category = json_text(profile_events.c.properties, "category")
    live_in_window = (
        profile_events.c.type == "track",
        profile_events.c.ts >= since,
        profile_events.c.ts <= until,
        profile_events.c.profile_id.not_in(merged),
    )
    views = (
        sa.select(profile_events.c.profile_id, category.label("category"), sa.func.min(profile_events.c.ts))
        .where(profile_events.c.name == VIEW_EVENT, category.is_not(None), *live_in_window)
        .group_by(profile_events.c.profile_id, category)
    )
    orders = sa.select(profile_events.c.profile_id, profile_events.c.ts, profile_events.c.properties).where(
        profile_events.c.name == ORDER_EVENT, *live_in_window
    )
    viewers = views.subquery()
    with engine.connect() as conn:
        first_view: dict[tuple[str, str], datetime] = {(p, c): ts for p, c, ts in conn.execute(views)}
        bought: dict[tuple[str, str], float] = {}  # (profile, category) → revenue, for orders after the view
        for profile_id, ts, properties in conn.execute(orders):
            props = properties if isinstance(properties, dict) else {}
            cats = _order_categories(props)
            if not cats:
                continue
            share = _order_revenue(props) / len(cats)
            for cat in cats:
                seen = first_view.get((profile_id, cat))
                if seen is not None and ts >= seen:
                    bought[(profile_id, cat)] = bought.get((profile_id, cat), 0.0) + share
        memberships = conn.execute(
            sa.select(segment_memberships.c.segment_id, segment_memberships.c.profile_id).where(
                segment_memberships.c.exited_at.is_(None),
                segment_memberships.c.profile_id.in_(sa.select(viewers.c.profile_id).distinct()),
            )
        ).all()
        names = dict(conn.execute(sa.select(segments.c.id, segments.c.name)).all())
    in_segments: dict[str, list[int]] = defaultdict(list)
    for segment_id, profile_id in memberships:
        if segment_id in names:
            in_segments[profile_id].append(segment_id)
    # (segment id or None for everyone, category) → [visitors, converters, revenue]
    counts: dict[tuple[int | None, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for key in first_view:
        profile_id, cat = key
        revenue = bought.get(key)
        for segment_id in [None, *in_segments.get(profile_id, [])]:
            cell = counts[(segment_id, cat)]
            cell[0] += 1
            if revenue is not None:
                cell[1] += 1
                cell[2] += revenue
    categories = sorted({cat for _, cat in first_view})
    seen_by_segment: dict[int, int] = defaultdict(int)
    for profile_id in {p for p, _ in first_view}:
        for segment_id in in_segments.get(profile_id, []):
            seen_by_segment[segment_id] += 1
    overall = {cat: _cell(int(v), int(c), r) for (sid, cat), (v, c, r) in counts.items() if sid is None}
    segment_ids = sorted({sid for sid, _ in counts if sid is not None}, key=lambda s: names[s])
    rows = []
    low_cells = 0
    for sid in segment_ids:
        cells: dict[str, Any] = {}
        for cat in categories:
            if (sid, cat) not in counts:
                cells[cat] = None
                continue
            v, c, r = counts[(sid, cat)]
            shown = _cell(int(v), int(c), r)
            category_rate = overall[cat]["conversion_rate"] or 0.0
            shown["low"] = bool(
                shown["visitors"] >= min_visitors and shown["conversion_high"] < category_rate
            )
            shown["difference"] = _r(shown["conversion_rate"] - category_rate)
            low_cells += shown["low"]
            cells[cat] = shown
        rows.append(
            {
                "segment": names[sid],
                "segment_id": sid,
                "visitors": seen_by_segment[sid],
                "cells": cells,
            }
        )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "days": days,
        "min_visitors": min_visitors,
        "view_event": VIEW_EVENT,
        "order_event": ORDER_EVENT,
        "categories": categories,
        "overall": overall,
        "segments": rows,
        "low_cells": low_cells,
    }
