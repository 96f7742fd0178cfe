"""Point-in-time behavioural features of every live profile, as of a cutoff.

Only `profile_events` rows with `ts <= at` are read, so a model trained on features at `t` and
labels after `t` never sees the future (no leakage). Everything is aggregated in one SQL statement
(GROUP BY profile_id with CASE WHEN windows, bounds as bound parameters), streamed in partitions
into a preallocated float matrix: the database does the counting, Python only copies numbers.

Which event names get their own count columns is decided once, from the training data
(`top_event_names`), and kept in the fitted model's parameters, so scoring builds the same columns
in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from opencdp.store.dialect import UTCDateTime, json_number
from opencdp.store.schema import profile_events, profiles

ORDER_EVENT = "Order Completed"
#: Windows (days back from the cutoff) for counts of events, orders, revenue, active days, names.
EVENT_WINDOWS = (7, 30, 90, 365)
ORDER_WINDOWS = (30, 90, 365)
DAY_WINDOWS = (7, 30, 90)
NAME_WINDOWS = (7, 30, 90)
#: How many of the most frequent (type, name) pairs get their own columns.
TOP_NAMES = 15
#: Always counted when they occur at all: the e-commerce signals (e-mail engagement, carts).
KNOWN_NAMES = (
    ("track", "Product Viewed"),
    ("track", "Product Added"),
    ("track", "Checkout Started"),
    ("track", "Email Opened"),
    ("track", "Email Link Clicked"),
)
_PARTITION = 20_000


class days_before(sa.sql.functions.FunctionElement[Any]):
    """(at - ts) in fractional days, on both engines (NULL when ts is NULL)."""

    type = sa.Float()
    inherit_cache = True


@compiles(days_before, "sqlite")
def _days_before_sqlite(element: days_before, compiler: Any, **kw: Any) -> str:
    at, ts = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(julianday({at}) - julianday({ts}))"


@compiles(days_before, "postgresql")
def _days_before_postgresql(element: days_before, compiler: Any, **kw: Any) -> str:
    at, ts = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"(CAST(EXTRACT(EPOCH FROM (CAST({at} AS TIMESTAMPTZ) - {ts})) AS DOUBLE PRECISION) / 86400.0)"


class utc_day(sa.sql.functions.FunctionElement[Any]):
    """The UTC calendar day of a timestamp (comparable within one engine)."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"substr({ts}, 1, 10)"  # stored as naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    (ts,) = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(({ts} AT TIME ZONE 'UTC') AS DATE)"


@dataclass
class Features:
    """One row per live profile (all of them, in `profile_ids` order)."""

    profile_ids: np.ndarray  # object array of str
    matrix: np.ndarray  # float64, (profiles, features); NaN where undefined (no order yet, …)
    names: list[str]
    #: True where the profile had at least one event at or before the cutoff.
    active: np.ndarray

    def subset(self, mask: np.ndarray) -> Features:
        return Features(self.profile_ids[mask], self.matrix[mask], self.names, self.active[mask])


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def top_event_names(engine: sa.Engine, at: datetime, limit: int = TOP_NAMES) -> list[list[str]]:
    """The most frequent (type, name) pairs up to `at` (orders have their own columns), plus the
    known e-commerce ones that occur at all; as JSON-able [type, name] pairs."""
    pe = profile_events
    stmt = (
        sa.select(pe.c.type, pe.c.name, sa.func.count().label("n"))
        .where(pe.c.ts <= at, pe.c.name.is_not(None), pe.c.name != ORDER_EVENT)
        .group_by(pe.c.type, pe.c.name)
        .order_by(sa.desc("n"), pe.c.type, pe.c.name)
    )
    with engine.connect() as conn:
        counted = [(str(t), str(n)) for t, n, _ in conn.execute(stmt)]
    chosen = [pair for pair in KNOWN_NAMES if pair in set(counted)]
    for pair in counted:
        if len(chosen) >= limit:
            break
        if pair not in chosen:
            chosen.append(pair)
    return [list(pair) for pair in chosen]


def feature_names(event_names: Sequence[Sequence[str]]) -> list[str]:
    """The columns `extract` builds, in order (SQL columns first, then the derived ones)."""
    return [name for name, _ in _columns(datetime(2000, 1, 1, tzinfo=UTC), event_names)] + list(_DERIVED)


_DERIVED = ("avg_order_value", "days_between_orders")


def _columns(at: datetime, event_names: Sequence[Sequence[str]]) -> list[tuple[str, sa.ColumnElement[Any]]]:
    pe = profile_events
    at_param = sa.bindparam("at", at, type_=UTCDateTime())

    def since(days: int) -> sa.ColumnElement[bool]:
        return pe.c.ts > at - timedelta(days=days)

    def days_ago(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(days_before(at_param, ts), -1.0)

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.count(sa.case((condition, 1)))

    is_order = pe.c.name == ORDER_EVENT
    revenue = sa.func.coalesce(json_number(pe.c.properties, "revenue"), 0.0)
    order_ts = sa.case((is_order, pe.c.ts))
    cols: list[tuple[str, sa.ColumnElement[Any]]] = [
        ("days_since_first_event", days_ago(sa.func.min(pe.c.ts))),
        ("days_since_last_event", days_ago(sa.func.max(pe.c.ts))),
        ("days_since_first_order", days_ago(sa.func.min(order_ts))),
        ("days_since_last_order", days_ago(sa.func.max(order_ts))),
        ("events_ever", sa.func.count()),
    ]
    cols += [(f"events_{d}d", count_if(since(d))) for d in EVENT_WINDOWS]
    cols += [("orders_ever", count_if(is_order))]
    cols += [(f"orders_{d}d", count_if(sa.and_(is_order, since(d)))) for d in ORDER_WINDOWS]
    cols += [("revenue_ever", sa.func.coalesce(sa.func.sum(sa.case((is_order, revenue))), 0.0))]
    cols += [
        (f"revenue_{d}d", sa.func.coalesce(sa.func.sum(sa.case((sa.and_(is_order, since(d)), revenue))), 0.0))
        for d in ORDER_WINDOWS
    ]
    cols += [
        (f"active_days_{d}d", sa.func.count(sa.distinct(sa.case((since(d), utc_day(pe.c.ts))))))
        for d in DAY_WINDOWS
    ]
    cols += [(f"pages_{d}d", count_if(sa.and_(pe.c.type == "page", since(d)))) for d in DAY_WINDOWS]
    for kind, name in event_names:
        is_name = sa.and_(pe.c.type == kind, pe.c.name == name)
        cols += [(f"{kind}_{slug(name)}_{d}d", count_if(sa.and_(is_name, since(d)))) for d in NAME_WINDOWS]
    return cols


def extract(engine: sa.Engine, at: datetime, event_names: Sequence[Sequence[str]]) -> Features:
    """Features of every live profile as of `at`, from events with `ts <= at` only."""
    columns = _columns(at, event_names)
    names = [name for name, _ in columns] + list(_DERIVED)
    pe = profile_events
    stmt = (
        sa.select(pe.c.profile_id, *(expr.label(f"f{i}") for i, (_, expr) in enumerate(columns)))
        .where(pe.c.ts <= at)
        .group_by(pe.c.profile_id)
    )
    with engine.connect() as conn:
        ids = [
            str(r[0])
            for r in conn.execute(
                sa.select(profiles.c.id).where(profiles.c.merged_into.is_(None)).order_by(profiles.c.id)
            )
        ]
        row_of = {pid: i for i, pid in enumerate(ids)}
        n_sql = len(columns)
        matrix = np.zeros((len(ids), len(names)), dtype=np.float64)
        active = np.zeros(len(ids), dtype=bool)
        result = conn.execution_options(yield_per=_PARTITION).execute(stmt)
        for part in result.partitions():
            rows = [row_of.get(r[0], -1) for r in part]
            values = np.array([tuple(r)[1:] for r in part], dtype=np.float64).reshape(len(part), n_sql)
            keep = np.fromiter((i >= 0 for i in rows), dtype=bool, count=len(rows))
            where = np.asarray(rows, dtype=np.int64)[keep]
            matrix[where, :n_sql] = values[keep]
            active[where] = True
    # No event yet: every "days since" is undefined (NaN); the counts stay 0.
    days = [i for i, name in enumerate(names) if name.startswith("days_since_")]
    block = matrix[:, days]
    block[(block < 0) | ~active[:, None]] = np.nan
    matrix[:, days] = block
    orders = matrix[:, names.index("orders_ever")]
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix[:, names.index("avg_order_value")] = np.where(
            orders > 0, matrix[:, names.index("revenue_ever")] / orders, np.nan
        )
        first, last = names.index("days_since_first_order"), names.index("days_since_last_order")
        span = matrix[:, first] - matrix[:, last]
        matrix[:, names.index("days_between_orders")] = np.where(orders > 1, span / (orders - 1), np.nan)
    return Features(np.array(ids, dtype=object), matrix, names, active)


def did_event(engine: sa.Engine, name: str, after: datetime, until: datetime) -> set[str]:
    """Live profiles with an event `name` in (after, until]: the label of a propensity."""
    pe = profile_events
    stmt = sa.select(pe.c.profile_id).where(pe.c.name == name, pe.c.ts > after, pe.c.ts <= until).distinct()
    with engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(stmt)}
