"""Reports: four built-in, parameterised views, and saved reports (a kind plus its parameters).

Why built-in kinds rather than free SQL: every report is then correct on both engines, fast
(each is one or two indexed queries), safe to offer to read-only users, and its parameters can
be validated. Saving a report stores only the kind and the parameters (`reports` table), so a
saved report always shows current data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup

from opencdp.store.dialect import json_number
from opencdp.store.schema import profile_events, profiles, segment_memberships, segments, sources
from opencdp.store.schema import segment_transitions as transitions
from opencdp.ui import charts
from opencdp.ui.charts import PLAIN, ChartText
from opencdp.ui.sql import day_range, utc_day
from opencdp.ui.tables import reports

MAX_SEGMENTS = 8


class ReportError(ValueError):
    """Bad parameters or a name clash; the message is shown to the user."""


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    kind: str  # "days", "segments", "event" or "property" (of the kind's `event` parameter)
    default: Any


@dataclass(frozen=True)
class Kind:
    title: str
    description: str
    params: tuple[Param, ...]


@dataclass
class Result:
    columns: list[str]
    rows: list[list[Any]]
    chart: Markup
    notes: list[str]
    money_columns: tuple[str, ...] = ()  # amounts in the shop's currency (shown with it)


def _segments_param() -> Param:
    return Param("segments", "Segments (none chosen: all, up to 8)", "segments", [])


KINDS: dict[str, Kind] = {
    "segment_size": Kind(
        "Segment size over time",
        "Members of each segment at the end of every day, from the recorded entries and exits.",
        (_segments_param(), Param("days", "Days", "days", 90)),
    ),
    "events_by_source": Kind(
        "Events per day by source",
        "How many events of each source were processed per day (by event time); optionally only "
        "one event or page name.",
        (Param("days", "Days", "days", 30), Param("event", "Only this event (empty: all)", "event", "")),
    ),
    "orders_by_segment": Kind(
        "Orders and revenue by segment",
        "Orders, buyers and revenue of each segment's current members in the period, with everyone "
        "for comparison.",
        (
            _segments_param(),
            Param("days", "Days", "days", 90),
            Param("event", "Order event", "event", "Order Completed"),
            Param("property", "Revenue property", "property", "revenue"),
        ),
    ),
    "conversion_by_segment": Kind(
        "Conversion by segment",
        "Of each segment's members who did the first event in the period, the share who also did the "
        "second in the period.",
        (
            _segments_param(),
            Param("days", "Days", "days", 90),
            Param("from_event", "From event", "event", "Product Viewed"),
            Param("to_event", "To event", "event", "Order Completed"),
        ),
    ),
}


def parse_params(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """Validated parameters with defaults; `given` maps names to a string or a list of strings."""
    if kind not in KINDS:
        raise ReportError(f"there is no report kind {kind!r}")
    out: dict[str, Any] = {}
    for p in KINDS[kind].params:
        raw = given.get(p.name)
        if p.kind == "segments":
            names = raw if isinstance(raw, list) else [raw] if raw else []
            out[p.name] = [str(n)[:200] for n in names if n][:MAX_SEGMENTS]
            continue
        text = (raw[0] if isinstance(raw, list) and raw else raw) if raw is not None else None
        if p.kind == "days":
            try:
                days = int(text) if text not in (None, "") else int(p.default)
            except (TypeError, ValueError):
                raise ReportError(f"{p.label}: give a whole number of days") from None
            if not 1 <= days <= 730:
                raise ReportError(f"{p.label}: between 1 and 730 days")
            out[p.name] = days
        else:
            out[p.name] = p.default if text is None else str(text).strip()[:500]
    return out


def _segment_ids(conn: sa.Connection, names: list[str], notes: list[str]) -> dict[str, int]:
    rows = conn.execute(sa.select(segments.c.name, segments.c.id).order_by(segments.c.name)).all()
    known = {r.name: r.id for r in rows}
    if not names:
        return dict(list(known.items())[:MAX_SEGMENTS])
    for name in names:
        if name not in known:
            notes.append(f"There is no segment named {name!r} any more.")
    return {n: known[n] for n in names if n in known}


def _members(segment_id: int) -> sa.Select[Any]:
    return sa.select(segment_memberships.c.profile_id).where(
        segment_memberships.c.segment_id == segment_id, segment_memberships.c.exited_at.is_(None)
    )


def segment_size(conn: sa.Connection, p: dict[str, Any], now: datetime, text: ChartText) -> Result:
    notes: list[str] = []
    start, days = day_range(p["days"], now)
    series: dict[str, list[float]] = {}
    for name, sid in _segment_ids(conn, p["segments"], notes).items():
        base = 0
        for r in conn.execute(
            sa.select(transitions.c.change, sa.func.count().label("n"))
            .where(transitions.c.segment_id == sid, transitions.c.at < start)
            .group_by(transitions.c.change)
        ):
            base += r.n if r.change == "entered" else -r.n
        delta: dict[str, int] = {}
        day = utc_day(transitions.c.at)
        for r in conn.execute(
            sa.select(day.label("day"), transitions.c.change, sa.func.count().label("n"))
            .where(transitions.c.segment_id == sid, transitions.c.at >= start)
            .group_by(day, transitions.c.change)
        ):
            delta[r.day] = delta.get(r.day, 0) + (r.n if r.change == "entered" else -r.n)
        sizes, size = [], base
        for label in days:
            size += delta.get(label, 0)
            sizes.append(float(size))
        series[name] = sizes
    if not series and not notes:
        notes.append("There are no saved segments yet.")
    rows = [[label, *(int(v[i]) for v in series.values())] for i, label in enumerate(days)]
    chart = charts.line_chart([text.day(d) for d in days], series, "Segment size over time", text)
    return Result(["day", *series], rows, chart, notes)


def events_by_source(conn: sa.Connection, p: dict[str, Any], now: datetime, text: ChartText) -> Result:
    """From `profile_events` (each processed event's name, time and source): a tenth of the bytes
    of the raw log to scan, and it keeps history after raw events pass their retention."""
    start, days = day_range(p["days"], now)
    names = dict(conn.execute(sa.select(sources.c.id, sources.c.name)).all())
    day = utc_day(profile_events.c.ts)
    stmt = (
        sa.select(profile_events.c.source_id, day.label("day"), sa.func.count().label("n"))
        .where(profile_events.c.ts >= start)
        .group_by(profile_events.c.source_id, day)
    )
    if p["event"]:
        stmt = stmt.where(profile_events.c.name == p["event"])
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute(stmt):
        counts.setdefault(names.get(r.source_id, f"source {r.source_id}"), {})[r.day] = r.n
    series = {name: [float(per_day.get(d, 0)) for d in days] for name, per_day in sorted(counts.items())}
    rows = [
        [d, *(int(v[i]) for v in series.values()), int(sum(v[i] for v in series.values()))]
        for i, d in enumerate(days)
    ]
    title = f"{p['event'] or 'Events'} per day by source"
    chart = charts.stacked_bar_chart([text.day(d) for d in days], series, title, text=text)
    return Result(["day", *series, "total"], rows, chart, [])


def orders_by_segment(conn: sa.Connection, p: dict[str, Any], now: datetime, text: ChartText) -> Result:
    notes: list[str] = []
    start, _ = day_range(p["days"], now)
    revenue = json_number(profile_events.c.properties, p["property"] or "revenue")
    groups: list[tuple[str, sa.Select[Any] | None]] = [("Everyone", None)]
    groups += [(n, _members(sid)) for n, sid in _segment_ids(conn, p["segments"], notes).items()]
    rows: list[list[Any]] = []
    for name, members in groups:
        stmt = sa.select(
            sa.func.count().label("orders"),
            sa.func.coalesce(sa.func.sum(revenue), 0).label("revenue"),
            sa.func.count(sa.distinct(profile_events.c.profile_id)).label("buyers"),
        ).where(profile_events.c.name == p["event"], profile_events.c.ts >= start)
        size_q = sa.select(sa.func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
        if members is not None:
            stmt = stmt.where(profile_events.c.profile_id.in_(members))
            size_q = sa.select(sa.func.count()).select_from(members.subquery())
        r = conn.execute(stmt).one()
        size = int(conn.execute(size_q).scalar_one())
        total = round(float(r.revenue), 2)
        rows.append(
            [
                name,
                size,
                int(r.buyers),
                int(r.orders),
                total,
                round(total / r.orders, 2) if r.orders else 0.0,
                round(total / size, 2) if size else 0.0,
            ]
        )
    chart = charts.hbar_chart([(r[0], r[4], text.money(r[4])) for r in rows], "Revenue by segment")
    columns = ["segment", "members", "buyers", "orders", "revenue", "average_order", "revenue_per_member"]
    return Result(columns, rows, chart, notes, ("revenue", "average_order", "revenue_per_member"))


def conversion_by_segment(conn: sa.Connection, p: dict[str, Any], now: datetime, text: ChartText) -> Result:
    """Two index range scans give who did each event; segments are then set intersections (one
    query per segment instead of two joins per segment)."""
    notes: list[str] = []
    start, _ = day_range(p["days"], now)

    def did(event: str) -> set[str]:
        stmt = sa.select(profile_events.c.profile_id).where(
            profile_events.c.name == event, profile_events.c.ts >= start
        )
        return {r[0] for r in conn.execute(stmt.distinct())}

    reached_all = did(p["from_event"])
    converted_all = reached_all & did(p["to_event"])
    groups: list[tuple[str, set[str] | None]] = [("Everyone", None)]
    groups += [
        (n, {r[0] for r in conn.execute(_members(sid))})
        for n, sid in _segment_ids(conn, p["segments"], notes).items()
    ]
    rows: list[list[Any]] = []
    for name, members in groups:
        reached = len(reached_all if members is None else reached_all & members)
        converted = len(converted_all if members is None else converted_all & members)
        rate = round(100 * converted / reached, 1) if reached else 0.0
        rows.append([name, reached, converted, rate])
    chart = charts.hbar_chart(
        [(r[0], r[3], f"{text.percent(r[3] / 100)} of {text.number(r[1])}") for r in rows],
        "Conversion by segment",
    )
    return Result(["segment", "reached", "converted", "conversion_percent"], rows, chart, notes)


RUNNERS = {
    "segment_size": segment_size,
    "events_by_source": events_by_source,
    "orders_by_segment": orders_by_segment,
    "conversion_by_segment": conversion_by_segment,
}


def run(
    engine: sa.Engine,
    kind: str,
    params: dict[str, Any],
    now: datetime | None = None,
    text: ChartText = PLAIN,
) -> Result:
    with engine.connect() as conn:
        return RUNNERS[kind](conn, params, now or datetime.now(UTC), text)


# --- Saved reports --------------------------------------------------------------------------


def list_saved(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(reports).order_by(reports.c.name))]


def get_saved(engine: sa.Engine, report_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(reports).where(reports.c.id == report_id)).first()
    return dict(row._mapping) if row else None


def save(
    engine: sa.Engine,
    name: str,
    kind: str,
    params: dict[str, Any],
    user_id: int,
    report_id: int | None = None,
) -> int:
    """Create (report_id None) or update a saved report; returns its id."""
    name = name.strip()
    if not name:
        raise ReportError("a report needs a name")
    params = parse_params(kind, params)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        clash = conn.execute(sa.select(reports.c.id).where(reports.c.name == name)).scalar()
        if clash is not None and clash != report_id:
            raise ReportError(f"a report named {name!r} already exists")
        if report_id is None:
            values = {"created_by": user_id, "created_at": now}
            conn.execute(
                reports.insert().values(name=name, kind=kind, params=params, updated_at=now, **values)
            )
        else:
            conn.execute(
                reports.update()
                .where(reports.c.id == report_id)
                .values(name=name, kind=kind, params=params, updated_at=now)
            )
        return int(conn.execute(sa.select(reports.c.id).where(reports.c.name == name)).scalar_one())


def delete(engine: sa.Engine, report_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(reports.delete().where(reports.c.id == report_id))
