"""Advocacy: who shares, and what their shares bring — visits, sign-ups and orders by other people.

A share event (`Product Shared`, `Cart Shared`, configurable) carries a share id (`share_id`). When
someone arrives through the shared link, the id comes back in their events: the demo shop and most
link builders put it in the UTM content (`context.campaign.content`), pages and products repeat it
as `properties.share_id`, Segment's `context.referrer.id` holds referral ids, and the link itself
has `?share=` (in `context.page.url` or `properties.url`). Every event whose id names a known
share is attributed to the sharer (the first profile that shared that id), and only when it is
another person's event: sharing and then clicking one's own link brings nothing.

- visits: distinct (visitor, share) among page and screen calls: reopening a link is one visit;
- sign-ups: a sign-up event (`Signed Up`) that carries the share id, or, as sign-ups usually do not,
  a visitor's first sign-up within `signup_window_days` after their first visit through a share;
- orders and revenue: order events (`Order Completed`) carrying the share id; revenue from
  `revenue`, else `total`, else `value`.

The score (0-100) is log-scaled so a first result counts more than the hundredth:
    points = 1·shares + 2·visits + 5·sign-ups + 10·orders
    advocacy_score = 100 · min(1, ln(1 + points) / ln(1 + points_for_100))   (points_for_100 = 200)
One share and nothing since gives 13; a share that brought a visit and a sign-up 41; one that also
brought an order 55. `advocate` is a score of at least `threshold` (40) with at least one visit,
sign-up or order: sharing often is not advocacy until someone comes.

Only profiles that shared get these traits. Everything is read up to `at`: shares, and the visits
and orders that come back (point in time).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from opencdp.predict.model import Fitted, TooThin
from opencdp.store.dialect import json_number, json_path_text, json_text, text_contains
from opencdp.store.schema import events, profile_events

KIND = "advocacy"
TRAITS = [
    "shares",
    "share_visits",
    "share_signups",
    "share_orders",
    "share_revenue",
    "advocacy_score",
    "advocate",
]
DEFAULTS: dict[str, Any] = {
    "share_events": ["Product Shared", "Cart Shared"],
    "share_id_property": "share_id",
    #: Where a visitor's event names the share, first found wins (paths into the raw message).
    "share_id_paths": [
        ["context", "campaign", "content"],
        ["properties", "share_id"],
        ["context", "referrer", "id"],
    ],
    #: Or in a parameter of a link's address (`?share=…`), for visits that kept no UTM content.
    "share_id_url_paths": [["context", "page", "url"], ["properties", "url"]],
    "share_id_url_parameters": ["share"],
    "visit_types": ["page", "screen"],
    "signup_events": ["Signed Up"],
    "order_events": ["Order Completed"],
    "revenue_properties": ["revenue", "total", "value"],
    "signup_window_days": 30,
    "weights": {"shares": 1.0, "visits": 2.0, "signups": 5.0, "orders": 10.0},
    "points_for_100": 200.0,
    "threshold": 40.0,
}


def _check(params: Mapping[str, Any]) -> None:
    names = ("share_events", "visit_types", "signup_events", "order_events", "revenue_properties")
    for key in (*names, "share_id_url_parameters"):
        value = params[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"options.{key} must be a list of names")
    for key in ("share_id_paths", "share_id_url_paths"):
        paths = params[key]
        if not isinstance(paths, list) or not all(
            isinstance(p, list) and p and all(isinstance(k, str) and k for k in p) for p in paths
        ):
            raise ValueError(
                f'options.{key} must be a list of paths such as ["context", "campaign", "content"]'
            )
    if not params["share_id_paths"] and not (
        params["share_id_url_paths"] and params["share_id_url_parameters"]
    ):
        raise ValueError("options.share_id_paths: no path or address parameter left to find share ids in")
    weights = params["weights"]
    if not isinstance(weights, Mapping) or set(weights) != set(DEFAULTS["weights"]):
        raise ValueError(f"options.weights must give {', '.join(DEFAULTS['weights'])}")
    for key, value in [*weights.items(), *((k, params[k]) for k in ("points_for_100", "threshold"))]:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"options {key} must be a number, 0 or more")
    if params["points_for_100"] <= 0:
        raise ValueError("options.points_for_100 must be more than 0")


def _shares(params: Mapping[str, Any], at: datetime) -> sa.Select[Any]:
    """Every share event up to `at` with its share id (or None), in time order."""
    pe = profile_events
    return (
        sa.select(
            pe.c.profile_id,
            pe.c.ts,
            json_text(pe.c.properties, params["share_id_property"]).label("share_id"),
        )
        .where(pe.c.type == "track", pe.c.name.in_(params["share_events"]), pe.c.ts <= at)
        .order_by(pe.c.ts, pe.c.event_id)
    )


def _first(values: list[sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
    """The first non-null of these (SQLite's coalesce wants two or more)."""
    return values[0] if len(values) == 1 else sa.func.coalesce(*values)


def _referred(params: Mapping[str, Any], since: datetime, at: datetime) -> sa.Select[Any]:
    """Visits, sign-ups and orders between the first share and `at` that may name a share: a value
    at a share id path, or an address with a share parameter; in time order, with those values from
    column 5 on (`_candidates`). They are matched to the shares in Python: joining on a value
    computed from JSON made SQLite scan every page view once per share, and a UTM content that is no
    share must not hide a share id at the next path."""
    pe = profile_events
    references = [json_path_text(events.c.payload, path) for path in params["share_id_paths"]]
    urls = [json_path_text(events.c.payload, path) for path in params["share_id_url_paths"]]
    revenue = _first([json_number(pe.c.properties, key) for key in params["revenue_properties"]])
    named = params["signup_events"] + params["order_events"]
    may_name = [r.is_not(None) for r in references] + [
        text_contains(url, f"{name}=") for url in urls for name in params["share_id_url_parameters"]
    ]
    return (
        sa.select(
            pe.c.profile_id,
            pe.c.type,
            pe.c.name,
            pe.c.ts,
            revenue.label("revenue"),
            *[reference.label(f"ref_{n}") for n, reference in enumerate(references)],
            *[url.label(f"url_{n}") for n, url in enumerate(urls)],
        )
        .select_from(pe.join(events, events.c.id == pe.c.event_id))
        .where(pe.c.ts >= since, pe.c.ts <= at, sa.or_(*may_name))
        .where(
            sa.or_(pe.c.type.in_(params["visit_types"]), sa.and_(pe.c.type == "track", pe.c.name.in_(named)))
        )
        .order_by(pe.c.ts, pe.c.event_id)
    )


def _candidates(row: sa.Row[Any], params: Mapping[str, Any]) -> Iterator[str]:
    """The share ids a `_referred` row may carry, in the order of the options."""
    first_url = 5 + len(params["share_id_paths"])
    yield from (value for value in row[5:first_url] if value is not None)
    for url in row[first_url:]:
        if url:
            query = parse_qs(urlsplit(url).query)
            for name in params["share_id_url_parameters"]:
                yield from query.get(name, [])


def points(counts: Mapping[str, float], weights: Mapping[str, float]) -> float:
    return sum(float(weights[key]) * float(counts.get(key, 0)) for key in weights)


def advocacy_score(counts: Mapping[str, float], params: Mapping[str, Any]) -> float:
    """0-100: log-scaled weighted points (see the module's docstring)."""
    raw = points(counts, params["weights"])
    return round(100.0 * min(1.0, math.log1p(raw) / math.log1p(float(params["points_for_100"]))), 1)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class _Tally:
    """What the shares brought, filled in time order."""

    def __init__(self) -> None:
        self.shares: Counter[str] = Counter()
        self.owners: dict[str, str] = {}  # share id → the profile that shared it first
        self.since: datetime | None = None  # the first share with an id
        self.visits: set[tuple[str, str, str]] = set()  # (sharer, visitor, share id)
        self.first_visit: dict[str, tuple[datetime, str]] = {}  # visitor → (when, sharer)
        self.signed: dict[str, str] = {}  # visitor → sharer credited with their sign-up
        self.orders: Counter[str] = Counter()
        self.revenue: defaultdict[str, float] = defaultdict(float)

    def counts(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {p: {"shares": n} for p, n in self.shares.items()}
        for sharer, _, _ in self.visits:
            entry = result.setdefault(sharer, {})
            entry["visits"] = entry.get("visits", 0) + 1
        for sharer in self.signed.values():
            entry = result.setdefault(sharer, {})
            entry["signups"] = entry.get("signups", 0) + 1
        for sharer, count in self.orders.items():
            result.setdefault(sharer, {}).update(orders=count, revenue=self.revenue[sharer])
        return result


def tally(engine: sa.Engine, params: Mapping[str, Any], at: datetime) -> dict[str, dict[str, Any]]:
    """sharer profile → {"shares", "visits", "signups", "orders", "revenue"} up to `at`."""
    found = _Tally()
    visit_types, signups = set(params["visit_types"]), set(params["signup_events"])
    with engine.connect() as conn:
        for profile_id, moment, shared_id in conn.execute(_shares(params, at)):
            found.shares[profile_id] += 1
            if shared_id is not None:
                found.owners.setdefault(shared_id, profile_id)
                found.since = found.since or _aware(moment)
        if found.since is None:
            return found.counts()
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
            _referred(params, found.since, at)
        )
        for row in rows:
            share_id = next((v for v in _candidates(row, params) if v in found.owners), None)
            if share_id is None or found.owners[share_id] == row.profile_id:  # no share, or one's own
                continue
            sharer = found.owners[share_id]
            if row.type in visit_types:
                found.visits.add((sharer, row.profile_id, share_id))
                found.first_visit.setdefault(row.profile_id, (_aware(row.ts), sharer))
            elif row.name in signups:
                found.signed.setdefault(row.profile_id, sharer)
            else:
                found.orders[sharer] += 1
                found.revenue[sharer] += float(row.revenue or 0.0)
        _signups_after_visits(conn, found, params, at)
    return found.counts()


def _signups_after_visits(
    conn: sa.Connection, found: _Tally, params: Mapping[str, Any], at: datetime
) -> None:
    """Sign-ups rarely carry the share id: credit a visitor's first sign-up within the window after
    their first visit through a share (visitors read by the thousand, through the profile index)."""
    pe = profile_events
    window = timedelta(days=float(params["signup_window_days"]))
    pending = [v for v in found.first_visit if v not in found.signed]
    for start in range(0, len(pending), 1000):
        rows = conn.execute(
            sa.select(pe.c.profile_id, pe.c.ts)
            .where(pe.c.type == "track", pe.c.name.in_(params["signup_events"]), pe.c.ts <= at)
            .where(pe.c.profile_id.in_(pending[start : start + 1000]))
            .order_by(pe.c.ts, pe.c.event_id)
        )
        for visitor, moment in rows:
            came, sharer = found.first_visit[visitor]
            if visitor not in found.signed and came <= _aware(moment) <= came + window:
                found.signed[visitor] = sharer


def _traits(counts: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    score = advocacy_score(counts, params)
    brought = counts.get("visits", 0) + counts.get("signups", 0) + counts.get("orders", 0)
    return {
        "shares": int(counts.get("shares", 0)),
        "share_visits": int(counts.get("visits", 0)),
        "share_signups": int(counts.get("signups", 0)),
        "share_orders": int(counts.get("orders", 0)),
        "share_revenue": round(float(counts.get("revenue", 0.0)), 2),
        "advocacy_score": score,
        "advocate": bool(brought > 0 and score >= float(params["threshold"])),
    }


class Advocacy:
    """The `advocacy` job: fit records the configuration and what it finds; score writes the traits
    of every profile that shared, as of `at`."""

    kind = KIND

    def fit(self, engine: sa.Engine, until: datetime, options: dict[str, Any]) -> Fitted:
        params = {key: options.get(key, default) for key, default in DEFAULTS.items()}
        _check(params)
        counts = tally(engine, params, until)
        if not counts:
            raise TooThin(
                f"nobody shared anything up to {until.isoformat()} ({', '.join(params['share_events'])})"
            )
        traits = [_traits(c, params) for c in counts.values()]
        quality = {
            "sharers": sum(1 for t in traits if t["shares"] > 0),
            "shares": sum(t["shares"] for t in traits),
            "share_visits": sum(t["share_visits"] for t in traits),
            "share_signups": sum(t["share_signups"] for t in traits),
            "share_orders": sum(t["share_orders"] for t in traits),
            "share_revenue": round(sum(t["share_revenue"] for t in traits), 2),
            "sharers_who_brought_someone": sum(
                1 for t in traits if t["share_visits"] + t["share_signups"] + t["share_orders"]
            ),
            "advocates": sum(1 for t in traits if t["advocate"]),
        }
        return Fitted(
            kind=KIND,
            name=str(options.get("name", KIND)),
            trained_at=datetime.now(UTC),
            window={"train_until": until.isoformat()},
            features=list(params["weights"]),
            params=params,
            quality=quality,
            traits=list(TRAITS),
            options=dict(options),
        )

    def score(self, engine: sa.Engine, fitted: Fitted, at: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        for profile_id, counts in tally(engine, fitted.params, at).items():
            yield profile_id, _traits(counts, fitted.params)


JOBS = {KIND: Advocacy()}
