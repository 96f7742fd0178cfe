"""Point-in-time behavioural features of every live profile, as of a cutoff.

Only `profile_events` rows with `ts <= at` are read, so a model trained on features at `t` and
labels after `t` never sees the future (no leakage). Everything is aggregated in SQL (GROUP BY
profile_id with CASE WHEN windows, bounds as bound parameters) and streamed into a preallocated
float matrix: the database does the counting, Python only copies numbers. Each column costs time
per event read, so three statements read as few events as they can (`_groups`), at the same time.

Which event names get their own count columns is decided once, from the training data
(`top_event_names`), and kept in the fitted model's parameters, so scoring builds the same columns
in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from opencdp.store.dialect import UTCDateTime, days_before, json_number, utc_day_number
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


_DERIVED = ("avg_order_value", "days_between_orders")
#: Windows up to this many days are counted by a statement that reads only the events of these
#: days (in a long history most events are older).
RECENT_DAYS = 90

Columns = list[tuple[str, sa.ColumnElement[Any]]]


@dataclass
class _Group:
    """Columns computed by one statement, over the events that match `where` (and ts <= at)."""

    columns: Columns
    where: list[sa.ColumnElement[bool]]


def _groups(at: datetime, event_names: Sequence[Sequence[str]]) -> list[_Group]:
    """Three statements, each reading as few rows as it can: every event up to `at` but only
    from the (profile_id, ts) index, which covers it; orders only, through the (name, ts) index;
    the events of the last RECENT_DAYS, for the many short windows."""
    pe = profile_events
    at_param = sa.bindparam("at", at, type_=UTCDateTime())

    def since(days: int) -> sa.ColumnElement[bool]:
        return pe.c.ts > at - timedelta(days=days)

    def recently(days: int) -> sa.ColumnElement[bool]:
        # the recent statement reads only ts > at - RECENT_DAYS: that window needs no test
        return sa.true() if days == RECENT_DAYS else since(days)

    def days_ago(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return days_before(at_param, ts)

    def count_if(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.count(sa.case((sa.and_(*conditions), 1)))

    revenue = sa.func.coalesce(json_number(pe.c.properties, "revenue"), 0.0)

    def revenue_if(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*conditions), revenue))), 0.0)

    everything = _Group(
        [
            ("days_since_first_event", days_ago(sa.func.min(pe.c.ts))),
            ("days_since_last_event", days_ago(sa.func.max(pe.c.ts))),
            ("events_ever", sa.func.count()),
            *((f"events_{d}d", count_if(since(d))) for d in EVENT_WINDOWS if d > RECENT_DAYS),
        ],
        [],
    )
    orders = _Group(
        [
            ("days_since_first_order", days_ago(sa.func.min(pe.c.ts))),
            ("days_since_last_order", days_ago(sa.func.max(pe.c.ts))),
            ("orders_ever", sa.func.count()),
            *((f"orders_{d}d", count_if(since(d))) for d in ORDER_WINDOWS),
            ("revenue_ever", sa.func.coalesce(sa.func.sum(revenue), 0.0)),
            *((f"revenue_{d}d", revenue_if(since(d))) for d in ORDER_WINDOWS),
        ],
        [pe.c.name == ORDER_EVENT],
    )
    recent = _Group(
        [
            *((f"events_{d}d", count_if(recently(d))) for d in EVENT_WINDOWS if d <= RECENT_DAYS),
            *(
                (
                    f"active_days_{d}d",
                    sa.func.count(sa.distinct(sa.case((recently(d), utc_day_number(pe.c.ts))))),
                )
                for d in DAY_WINDOWS
            ),
            *((f"pages_{d}d", count_if(pe.c.type == "page", recently(d))) for d in DAY_WINDOWS),
        ],
        [since(RECENT_DAYS)],
    )
    for kind, name in event_names:
        recent.columns += [
            (f"{kind}_{slug(name)}_{d}d", count_if(pe.c.name == name, pe.c.type == kind, recently(d)))
            for d in NAME_WINDOWS
        ]
    return [everything, orders, recent]


def extract(engine: sa.Engine, at: datetime, event_names: Sequence[Sequence[str]]) -> Features:
    """Features of every live profile as of `at`, from events with `ts <= at` only."""
    from concurrent.futures import ThreadPoolExecutor

    groups = _groups(at, event_names)
    names = [name for group in groups for name, _ in group.columns] + list(_DERIVED)
    pe = profile_events
    with engine.connect() as conn:
        ids = [
            str(r[0])
            for r in conn.execute(
                sa.select(profiles.c.id).where(profiles.c.merged_into.is_(None)).order_by(profiles.c.id)
            )
        ]
    row_of = {pid: i for i, pid in enumerate(ids)}
    matrix = np.zeros((len(ids), len(names)), dtype=np.float64)
    # "days since" is undefined (NaN) for a profile with no such event yet; counts start at 0
    matrix[:, [i for i, name in enumerate(names) if name.startswith("days_since_")]] = np.nan
    active = np.zeros(len(ids), dtype=bool)

    def run(group: _Group, offset: int) -> None:
        stmt = (
            sa.select(pe.c.profile_id, *(expr.label(f"f{i}") for i, (_, expr) in enumerate(group.columns)))
            .where(pe.c.ts <= at, *group.where)
            .group_by(pe.c.profile_id)
        )
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=_PARTITION).execute(stmt)
            for part in result.partitions():
                rows = np.fromiter((row_of.get(r[0], -1) for r in part), dtype=np.int64, count=len(part))
                # NULL (no order yet: no days since the last one) becomes NaN
                values = np.array([tuple(r)[1:] for r in part], dtype=np.float64).reshape(len(part), -1)
                keep = rows >= 0
                matrix[rows[keep], offset : offset + len(group.columns)] = values[keep]
                if group is groups[0]:
                    active[rows[keep]] = True

    offsets = np.cumsum([0] + [len(group.columns) for group in groups]).tolist()
    # The statements run at once, each on its own connection (sqlite3 and psycopg release the GIL
    # while the database works); each writes its own columns of the matrix.
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        for done in [pool.submit(run, g, o) for g, o in zip(groups, offsets, strict=False)]:
            done.result()
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
