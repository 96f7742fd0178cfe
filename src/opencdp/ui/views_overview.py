"""The overview page: how many profiles, how many identified, what is arriving and from where.

Event counts come from `profile_events` (name, time and source of every processed event): a
tenth of the bytes of the raw log to scan, so the page stays fast as the log grows; the log itself
is only asked for each source's newest row, through its (source_id, message_id) index."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from opencdp.store.dialect import json_number
from opencdp.store.schema import events, identities, profile_events, profiles, segments, sources
from opencdp.ui import charts
from opencdp.ui.display import chart_text, viewer_of
from opencdp.ui.sql import day_range, utc_day
from opencdp.ui.web import SignedIn, UIRoute, engine_of, render, ui_settings

router = APIRouter(route_class=UIRoute, include_in_schema=False)
#: Identifier types that do not make a profile "identified" (they name a browser or device).
ANONYMOUS_TYPES = ("anonymous_id", "device_id")
#: What counts as an order and its amount (the defaults of the "Orders and revenue" report).
ORDER_EVENT, REVENUE_PROPERTY = "Order Completed", "revenue"


def commerce(conn: sa.Connection, start: datetime, days: int) -> dict[str, dict[str, float]]:
    """Revenue, orders, buyers, active profiles and conversion (buyers / active) of the window
    from `start` and of the window of the same length before it. Two set-based queries: the
    orders through the (name, ts) index, the active profiles over both windows' events."""
    before = start - timedelta(days=days)
    now_ = profile_events.c.ts >= start
    orders = conn.execute(
        sa.select(
            sa.func.coalesce(
                sa.func.sum(sa.case((now_, json_number(profile_events.c.properties, REVENUE_PROPERTY)))), 0
            ),
            sa.func.coalesce(
                sa.func.sum(sa.case((~now_, json_number(profile_events.c.properties, REVENUE_PROPERTY)))),
                0,
            ),
            sa.func.count(sa.case((now_, 1))),
            sa.func.count(sa.case((~now_, 1))),
            sa.func.count(sa.distinct(sa.case((now_, profile_events.c.profile_id)))),
            sa.func.count(sa.distinct(sa.case((~now_, profile_events.c.profile_id)))),
        ).where(profile_events.c.name == ORDER_EVENT, profile_events.c.ts >= before)
    ).one()
    active = conn.execute(
        sa.select(
            sa.func.count(sa.distinct(sa.case((now_, profile_events.c.profile_id)))),
            sa.func.count(sa.distinct(sa.case((~now_, profile_events.c.profile_id)))),
        ).where(profile_events.c.ts >= before)
    ).one()
    periods: dict[str, dict[str, float]] = {}
    for i, period in enumerate(("current", "previous")):
        buyers, people = int(orders[4 + i]), int(active[i])
        periods[period] = {
            "revenue": round(float(orders[i]), 2),
            "orders": int(orders[2 + i]),
            "buyers": buyers,
            "active": people,
            "conversion": buyers / people if people else 0.0,
        }
    return periods


def overview_data(engine: sa.Engine, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    start, labels = day_range(days, now)
    live = sa.select(profiles.c.id).where(profiles.c.merged_into.is_(None))
    with engine.connect() as conn:
        profile_count = conn.execute(sa.select(sa.func.count()).select_from(live.subquery())).scalar_one()
        identified = conn.execute(
            sa.select(sa.func.count(sa.distinct(identities.c.profile_id))).where(
                identities.c.type.not_in(ANONYMOUS_TYPES), identities.c.profile_id.in_(live)
            )
        ).scalar_one()
        day = utc_day(profile_events.c.ts)
        per_day: dict[str, int] = {}
        per_source: dict[int, int] = {}
        for row in conn.execute(
            sa.select(profile_events.c.source_id, day.label("day"), sa.func.count().label("n"))
            .where(profile_events.c.ts >= start)
            .group_by(profile_events.c.source_id, day)
        ):
            per_day[row.day] = per_day.get(row.day, 0) + row.n
            per_source[row.source_id] = per_source.get(row.source_id, 0) + row.n
        top_events = conn.execute(
            sa.select(profile_events.c.name, sa.func.count().label("n"))
            .where(profile_events.c.type == "track", profile_events.c.ts >= start)
            .group_by(profile_events.c.name)
            .order_by(sa.func.count().desc(), profile_events.c.name)
            .limit(8)
        ).all()
        # the newest log row per source, from the (source_id, message_id) index alone
        newest = (
            conn.execute(sa.select(sa.func.max(events.c.id)).group_by(events.c.source_id)).scalars().all()
        )
        last_by_source = dict(
            conn.execute(
                sa.select(events.c.source_id, events.c.received_at).where(events.c.id.in_(newest))
            ).all()
        )
        source_rows = conn.execute(sa.select(sources).order_by(sources.c.name)).all()
        segment_count = conn.execute(sa.select(sa.func.count()).select_from(segments)).scalar_one()
        merged = conn.execute(
            sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_not(None))
        ).scalar_one()
        sales = commerce(conn, start, days)
    return {
        "commerce": sales,
        "days": days,
        "profiles": int(profile_count),
        "identified": int(identified),
        "anonymous": int(profile_count) - int(identified),
        "events_in_window": sum(per_day.values()),
        "per_day": [(label, per_day.get(label, 0)) for label in labels],
        "top_events": [(r.name, int(r.n)) for r in top_events],
        "sources": [
            {
                "name": s.name,
                "enabled": s.enabled,
                "events": per_source.get(s.id, 0),
                "last_event": last_by_source.get(s.id),
            }
            for s in source_rows
        ],
        "segments": int(segment_count),
        "merged": int(merged),
    }


@router.get("/")
def overview(request: Request, session: SignedIn, days: int = Query(30, ge=7, le=365)) -> Response:
    data = overview_data(engine_of(request), days)
    text = chart_text(viewer_of(request, ui_settings()))
    labels = [text.day(d) for d, _ in data["per_day"]]
    chart = charts.bar_chart(
        labels, [n for _, n in data["per_day"]], f"Events per day, last {days} days", "events", text
    )
    share = charts.share_bar(
        [("identified", data["identified"]), ("anonymous", data["anonymous"])],
        "Identified and anonymous",
        text,
    )
    top = charts.hbar_chart(
        [(name or "(unnamed)", n, text.number(n)) for name, n in data["top_events"]], "Top events", width=560
    )
    return render(
        request,
        "overview.html",
        {"nav": "overview", "data": data, "chart": chart, "share": share, "top": top},
    )
