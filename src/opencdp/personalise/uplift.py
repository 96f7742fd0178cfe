"""Did an experience work? Conversion and revenue per visitor of the visitors who saw a variant
(treated) against those held out from it (holdout), per variant and per segment.

The unit is the profile. A profile's **first exposure** — its earliest `Experience Viewed` event of
the experience with a variant (decisions without one, `no_match`, are not part of the comparison)
inside the window — decides its variant and its arm (`holdout` true or false); a profile later seen
in the other arm still counts in its first. It **converted** when it performed the goal event
(default: the experience's `goal`) after that first exposure and at most `attribution_days` (default
7) after it; its **revenue** is the sum of its `Order Completed` revenue (`revenue`, `total` or
`value`) in the same span, 0 when it ordered nothing.

Per variant and arm: visitors, converters, the conversion rate with its 95 % Wilson interval and
revenue per visitor. Per variant: the absolute uplift (treated rate - holdout rate) with Newcombe's
95 % hybrid score interval, the relative uplift (absolute / holdout rate) and the difference in
revenue per visitor with Welch's 95 % interval (personalise/stats.py). Flags:
- `small_sample`: an arm has fewer than `MIN_VISITORS` (100) visitors — the interval is wide and
  the normal approximations behind it are rough; wait for more traffic;
- `inconclusive`: the uplift interval includes 0 — the data are consistent with no effect;
- `no_holdout`: nobody in the row was held out (holdout_percent 0, or a segment without a held-out
  member), so there is nothing to compare with.

The same is broken down by segment: the exposed profiles' current memberships (largest segments
first, or one named segment). Counting is done by SQL aggregates (one row per variant x arm, or per
segment x variant x arm); the intervals are computed from those in Python. The numbers are the same
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.personalise.experiences import EXPERIENCE_VIEWED, ExperienceError, parse_experience
from opencdp.personalise.stats import Moments, newcombe, welch, wilson
from opencdp.store.dialect import epoch_seconds, json_bool, json_number, json_text
from opencdp.store.schema import experiences, profile_events, profiles, segment_memberships, segments

DEFAULT_GOAL = "Order Completed"
REVENUE_EVENT = "Order Completed"
REVENUE_PROPERTIES = ("revenue", "total", "value")
DEFAULT_ATTRIBUTION_DAYS = 7.0
#: Below this many visitors in an arm a comparison is flagged `small_sample`.
MIN_VISITORS = 100
#: Segments shown in the breakdown (largest first) unless one is asked for.
TOP_SEGMENTS = 10
_DIGITS = 6


class UpliftError(ValueError):
    """Nothing to report: no such experience (and no exposures logged under its name)."""


@dataclass(frozen=True)
class _Cell:
    visitors: int
    converters: int
    revenue: Moments


def _revenue(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(*[json_number(column, name) for name in REVENUE_PROPERTIES], 0.0)


def find_experience(conn: sa.Connection, name: str) -> dict[str, Any] | None:
    """The stored experience (id, name, definition, goal), or None."""
    row = conn.execute(
        sa.select(experiences.c.id, experiences.c.name, experiences.c.definition).where(
            experiences.c.name == name
        )
    ).first()
    if row is None:
        return None
    goal = DEFAULT_GOAL
    try:
        goal = parse_experience(row.definition).goal
    except ExperienceError:
        if isinstance(row.definition, dict) and isinstance(row.definition.get("goal"), str):
            goal = row.definition["goal"]
    return {"id": row.id, "name": row.name, "definition": row.definition, "goal": goal}


def _first_exposures(
    name: str, experience_id: int | None, since: datetime | None, until: datetime
) -> sa.Subquery:
    """One row per live profile: its first exposure with a variant (ts, variant, holdout)."""
    props = profile_events.c.properties
    same = json_text(props, "experience") == name
    if experience_id is not None:
        same = sa.or_(same, json_number(props, "experience_id") == experience_id)
    merged = sa.select(profiles.c.id).where(profiles.c.merged_into.is_not(None))
    conditions = [
        profile_events.c.type == "track",
        profile_events.c.name == EXPERIENCE_VIEWED,
        same,
        json_text(props, "variant").is_not(None),
        profile_events.c.ts <= until,
        profile_events.c.profile_id.not_in(merged),
    ]
    if since is not None:
        conditions.append(profile_events.c.ts >= since)
    ranked = (
        sa.select(
            profile_events.c.profile_id,
            profile_events.c.ts,
            json_text(props, "variant").label("variant"),
            sa.func.coalesce(json_bool(props, "holdout"), sa.false()).label("holdout"),
            sa.func.row_number()
            .over(
                partition_by=profile_events.c.profile_id,
                order_by=(profile_events.c.ts, profile_events.c.event_id),
            )
            .label("rank"),
        )
        .where(*conditions)
        .subquery("ranked")
    )
    return (
        sa.select(ranked.c.profile_id, ranked.c.ts, ranked.c.variant, ranked.c.holdout)
        .where(ranked.c.rank == 1)
        .subquery("first_exposure")
    )


def _ever_exposed(conn: sa.Connection, name: str) -> bool:
    found = conn.execute(
        sa.select(profile_events.c.event_id)
        .where(
            profile_events.c.name == EXPERIENCE_VIEWED,
            json_text(profile_events.c.properties, "experience") == name,
        )
        .limit(1)
    ).first()
    return found is not None


def _per_profile(first: sa.Subquery, goal: str, attribution_days: float, until: datetime) -> sa.Subquery:
    """Per exposed profile: converted (0/1) and revenue in its attribution window."""
    g = profile_events.alias("g")
    span = epoch_seconds(g.c.ts) - epoch_seconds(first.c.ts)
    joined = first.outerjoin(
        g,
        sa.and_(
            g.c.profile_id == first.c.profile_id,
            g.c.type == "track",
            g.c.name.in_(sorted({goal, REVENUE_EVENT})),
            g.c.ts > first.c.ts,
            g.c.ts <= until,
            span <= attribution_days * 86400.0,
        ),
    )
    converted = sa.func.max(sa.case((g.c.name == goal, 1), else_=0))
    revenue = sa.func.sum(sa.case((g.c.name == REVENUE_EVENT, _revenue(g.c.properties)), else_=0.0))
    return (
        sa.select(
            first.c.profile_id,
            first.c.variant,
            first.c.holdout,
            converted.label("converted"),
            sa.func.coalesce(revenue, 0.0).label("revenue"),
        )
        .select_from(joined)
        .group_by(first.c.profile_id, first.c.variant, first.c.holdout)
        .subquery("per_profile")
    )


def _aggregates(per: sa.Subquery) -> list[sa.ColumnElement[Any]]:
    return [
        sa.func.count().label("visitors"),
        sa.func.sum(per.c.converted).label("converters"),
        sa.func.sum(per.c.revenue).label("revenue"),
        sa.func.sum(per.c.revenue * per.c.revenue).label("squares"),
    ]


def _cell(row: Any) -> _Cell:
    return _Cell(
        int(row.visitors),
        int(row.converters or 0),
        Moments(int(row.visitors), round(float(row.revenue or 0.0), 4), round(float(row.squares or 0.0), 2)),
    )


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, _DIGITS)


def _arm(cell: _Cell | None) -> dict[str, Any]:
    cell = cell or _Cell(0, 0, Moments(0, 0.0, 0.0))
    interval = wilson(cell.converters, cell.visitors)
    return {
        "visitors": cell.visitors,
        "converters": cell.converters,
        "conversion_rate": _r(cell.converters / cell.visitors) if cell.visitors else None,
        "conversion_low": _r(interval.low) if cell.visitors else None,
        "conversion_high": _r(interval.high) if cell.visitors else None,
        "revenue": _r(cell.revenue.total),
        "revenue_per_visitor": _r(cell.revenue.mean) if cell.visitors else None,
    }


def compare(variant: str, treated: _Cell | None, holdout: _Cell | None) -> dict[str, Any]:
    """One variant's treated arm against its holdout: the report's row."""
    t = treated or _Cell(0, 0, Moments(0, 0.0, 0.0))
    h = holdout or _Cell(0, 0, Moments(0, 0.0, 0.0))
    flags: list[str] = []
    out: dict[str, Any] = {
        "variant": variant,
        "treated": _arm(t),
        "holdout": _arm(h),
        "uplift": None,
        "relative_uplift": None,
        "revenue_per_visitor_difference": None,
    }
    if h.visitors == 0:
        flags.append("no_holdout")
    if min(t.visitors, h.visitors) < MIN_VISITORS:
        flags.append("small_sample")
    if t.visitors and h.visitors:
        pt, ph = t.converters / t.visitors, h.converters / h.visitors
        interval = newcombe(t.converters, t.visitors, h.converters, h.visitors)
        out["uplift"] = {"absolute": _r(pt - ph), "low": _r(interval.low), "high": _r(interval.high)}
        out["relative_uplift"] = _r((pt - ph) / ph) if ph else None
        if interval.crosses_zero():
            flags.append("inconclusive")
        revenue = welch(t.revenue, h.revenue)
        out["revenue_per_visitor_difference"] = {
            "difference": _r(t.revenue.mean - h.revenue.mean),
            "low": _r(revenue.low) if revenue else None,
            "high": _r(revenue.high) if revenue else None,
        }
    elif t.visitors or h.visitors:
        flags.append("inconclusive")
    out["flags"] = flags
    out["significant"] = not flags
    return out


def _compare_all(cells: dict[tuple[str, bool], _Cell]) -> list[dict[str, Any]]:
    variants = sorted({variant for variant, _ in cells})
    rows = [compare(v, cells.get((v, False)), cells.get((v, True))) for v in variants]
    if len(variants) > 1:  # every variant together: did personalising this placement work at all?
        pooled = {arm: _pool([c for (_, h), c in cells.items() if h == arm]) for arm in (False, True)}
        rows.append(compare("(all variants)", pooled[False], pooled[True]) | {"pooled": True})
    return rows


def _pool(cells: list[_Cell]) -> _Cell:
    return _Cell(
        sum(c.visitors for c in cells),
        sum(c.converters for c in cells),
        Moments(
            sum(c.revenue.n for c in cells),
            sum(c.revenue.total for c in cells),
            sum(c.revenue.squares for c in cells),
        ),
    )


def uplift_report(
    engine: sa.Engine,
    name: str,
    *,
    goal: str | None = None,
    days: float | None = None,
    attribution_days: float = DEFAULT_ATTRIBUTION_DAYS,
    segment: str | None = None,
    top_segments: int = TOP_SEGMENTS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The uplift report of the experience `name` (see the module's docstring)."""
    if attribution_days <= 0:
        raise ValueError("attribution_days must be above 0")
    until = (now or datetime.now(UTC)).astimezone(UTC)
    since = until - timedelta(days=days) if days is not None else None
    with engine.connect() as conn:
        stored = find_experience(conn, name)
        goal = goal or (stored["goal"] if stored else DEFAULT_GOAL)
        first = _first_exposures(name, stored["id"] if stored else None, since, until)
        span = conn.execute(sa.select(sa.func.min(first.c.ts), sa.func.count()).select_from(first)).one()
        if stored is None and not span[1] and not _ever_exposed(conn, name):
            raise UpliftError(
                f"there is no experience named {name!r} and no {EXPERIENCE_VIEWED!r} event names it"
            )
        per = _per_profile(first, goal, attribution_days, until)
        cells = {
            (row.variant, bool(row.holdout)): _cell(row)
            for row in conn.execute(
                sa.select(per.c.variant, per.c.holdout, *_aggregates(per)).group_by(
                    per.c.variant, per.c.holdout
                )
            )
        }
        member = segment_memberships
        by_segment_query = (
            sa.select(member.c.segment_id, per.c.variant, per.c.holdout, *_aggregates(per))
            .select_from(per.join(member, member.c.profile_id == per.c.profile_id))
            .where(member.c.exited_at.is_(None))
            .group_by(member.c.segment_id, per.c.variant, per.c.holdout)
        )
        names = dict(conn.execute(sa.select(segments.c.id, segments.c.name)).all())
        if segment is not None:
            wanted = [sid for sid, sname in names.items() if sname == segment]
            if not wanted:
                raise UpliftError(f"there is no segment named {segment!r}")
            by_segment_query = by_segment_query.where(member.c.segment_id.in_(wanted))
        by_segment: dict[int, dict[tuple[str, bool], _Cell]] = {}
        for row in conn.execute(by_segment_query):
            by_segment.setdefault(row.segment_id, {})[(row.variant, bool(row.holdout))] = _cell(row)
    sizes = {sid: sum(c.visitors for c in cs.values()) for sid, cs in by_segment.items()}
    chosen = sorted((sid for sid in by_segment if sid in names), key=lambda s: (-sizes[s], names[s]))
    if segment is None:
        chosen = chosen[: max(top_segments, 0)]
    return {
        "experience": name,
        "experience_id": stored["id"] if stored else None,
        "goal": goal,
        "revenue_event": REVENUE_EVENT,
        "attribution_days": attribution_days,
        "since": (since or span[0]).isoformat() if (since or span[0]) else None,
        "until": until.isoformat(),
        "visitors": int(span[1]),
        "min_visitors": MIN_VISITORS,
        "method": {
            "conversion": "Wilson score interval, 95 %",
            "uplift": "Newcombe hybrid score interval (method 10), 95 %",
            "revenue_per_visitor": "Welch t interval, 95 %",
        },
        "variants": _compare_all(cells),
        "segments": [
            {
                "segment": names[sid],
                "segment_id": sid,
                "visitors": sizes[sid],
                "variants": _compare_all(by_segment[sid]),
            }
            for sid in chosen
        ],
        "segments_total": len(by_segment),
    }


def uplift_table(report: dict[str, Any]) -> list[list[str]]:
    """The report's variant rows as text cells (the CLI's table)."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def pts(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:+.1f}"

    rows = [
        [
            "variant",
            "treated n",
            "treated conv",
            "holdout n",
            "holdout conv",
            "uplift (pts)",
            "95% interval",
            "relative",
            "rev/visitor diff",
            "flags",
        ]
    ]
    for row in report["variants"]:
        up, rev = row["uplift"] or {}, row["revenue_per_visitor_difference"] or {}
        interval = f"[{pts(up.get('low'))}, {pts(up.get('high'))}]" if up else "-"
        rev_text = "-"
        if rev and rev.get("low") is not None:
            rev_text = f"{rev['difference']:+.2f} [{rev['low']:+.2f}, {rev['high']:+.2f}]"
        rows.append(
            [
                row["variant"],
                str(row["treated"]["visitors"]),
                pct(row["treated"]["conversion_rate"]),
                str(row["holdout"]["visitors"]),
                pct(row["holdout"]["conversion_rate"]),
                pts(up.get("absolute")) if up else "-",
                interval,
                pct(row["relative_uplift"]),
                rev_text,
                ", ".join(row["flags"]) or "significant",
            ]
        )
    return rows
