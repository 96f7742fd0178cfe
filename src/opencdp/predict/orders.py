"""Every customer's order history as of a cutoff day, summarised the way the published BG/NBD and
Gamma-Gamma fits summarise it (frequency, recency, T, monetary).

Point in time: only orders on or before the cutoff day are read, so a model fitted today and one
refitted later from the same log see the same history. Purchases count per calendar day (several
orders on one day are one purchase with their revenue summed), as in Fader, Hardie & Lee's CDNOW
data and lifetimes' `summary_data_from_transaction_data`. The database computes each order's day —
or, for a time zone other than UTC, its quarter hour, mapped to local days here — and revenue;
the rows are streamed unsorted and reduced with numpy (sorting millions of rows in numpy is
cheaper than in the database).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa

from opencdp.store.dialect import QUARTER_HOUR_SECONDS, json_number, quarter_hour_number, utc_day_number
from opencdp.store.schema import profile_events, profiles

DEFAULT_EVENT = "Order Completed"
#: Where an order's revenue is read from: the first of these properties that holds a number.
DEFAULT_REVENUE_PROPERTIES: tuple[str, ...] = ("revenue", "total", "value")
UNITS = {"days": 1.0, "weeks": 7.0}

_EPOCH = date(1970, 1, 1)
_ROWS_PER_FETCH = 100_000


@dataclass(frozen=True)
class PurchaseDays:
    """One row per (customer, purchase day), sorted by customer then day."""

    #: Profile id of each customer (object array); `customer` indexes it.
    profile_ids: np.ndarray
    customer: np.ndarray
    #: Calendar day number (days since 1970-01-01 in the chosen time zone).
    day: np.ndarray
    #: The day's revenue (orders without a numeric revenue count 0).
    revenue: np.ndarray
    #: The last calendar day read.
    until: date


@dataclass(frozen=True)
class Summary:
    """Frequency, recency, T and monetary per customer with at least one purchase by `cutoff`."""

    profile_ids: np.ndarray
    #: Index of each customer into the `PurchaseDays.profile_ids` it was computed from.
    customers: np.ndarray
    #: Repeat purchases: distinct purchase days - 1.
    frequency: np.ndarray
    #: Time from the first to the last purchase day, in `unit`.
    recency: np.ndarray
    #: Time from the first purchase day to the cutoff day, in `unit`.
    T: np.ndarray
    #: Mean revenue of the repeat purchase days (the first day excluded); 0 without repeats.
    monetary: np.ndarray
    cutoff: date
    unit: str


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def cutoff_day(until: date | datetime, timezone: str = "UTC") -> date:
    """The calendar day `until` names in the time zone (its whole day is included)."""
    if isinstance(until, datetime):
        if until.tzinfo is None:
            return until.date()
        return until.astimezone(ZoneInfo(timezone)).date()
    return until


def read_purchase_days(
    engine: sa.Engine,
    until: date | datetime,
    *,
    event: str = DEFAULT_EVENT,
    revenue_properties: Sequence[str] = DEFAULT_REVENUE_PROPERTIES,
    timezone: str = "UTC",
) -> PurchaseDays:
    """The purchase days of every live profile, up to and including the day of `until`."""
    zone = ZoneInfo(timezone)  # an unknown name raises ZoneInfoNotFoundError here, before any query
    last_day = cutoff_day(until, timezone)
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    local = timezone not in ("UTC", "Etc/UTC")
    bucket: sa.ColumnElement[int] = (
        quarter_hour_number(profile_events.c.ts) if local else utc_day_number(profile_events.c.ts)
    )
    bucket = bucket.label("bucket")
    properties = [json_number(profile_events.c.properties, p) for p in revenue_properties]
    revenue: sa.ColumnElement[Any] = sa.null()
    if properties:
        revenue = sa.func.coalesce(*properties) if len(properties) > 1 else properties[0]
    merged = sa.select(profiles.c.id).where(profiles.c.merged_into.is_not(None))
    # No GROUP BY or ORDER BY: sorting millions of rows costs the database more than numpy.
    query = sa.select(profile_events.c.profile_id, bucket, revenue).where(
        profile_events.c.type == "track",
        profile_events.c.name == event,
        profile_events.c.ts < end,
        profile_events.c.profile_id.not_in(merged),
    )
    ids: list[str] = []
    buckets: list[np.ndarray] = []
    revenues: list[np.ndarray] = []
    with engine.connect() as conn:
        for chunk in _driver_rows(conn, query):
            ids.extend(row[0] for row in chunk)
            buckets.append(np.array([row[1] for row in chunk], dtype=np.int64))
            revenues.append(np.array([row[2] for row in chunk], dtype=np.float64))
    index = {profile_id: i for i, profile_id in enumerate(dict.fromkeys(ids))}
    customer = np.fromiter(map(index.__getitem__, ids), dtype=np.int64, count=len(ids))
    profile_ids = np.array(list(index), dtype=object)
    day = np.concatenate(buckets) if buckets else np.array([], dtype=np.int64)
    money = np.nan_to_num(np.concatenate(revenues)) if revenues else np.array([], dtype=np.float64)
    if local and len(day):
        day = _local_days(day, zone)
    customer, day, money = _sum_per_day(customer, day, money)
    return PurchaseDays(profile_ids, customer, day, money, last_day)


def _driver_rows(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[list[Any]]:
    """The query's rows in chunks, as plain tuples straight from the driver (a server-side cursor
    on PostgreSQL). Building millions of SQLAlchemy rows would cost more than the query itself;
    these columns need no result conversion, and the parameters get their types' conversion here."""
    dialect = conn.dialect
    compiled = query.compile(dialect=dialect)
    params = compiled.construct_params()
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None and name in params:
            params[name] = processor(params[name])
    arguments: Any = [params[name] for name in compiled.positiontup or ()] if compiled.positional else params
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor(name="opencdp_orders") if dialect.name == "postgresql" else driver.cursor()
    try:
        cursor.execute(compiled.string, arguments)
        while chunk := cursor.fetchmany(_ROWS_PER_FETCH):
            yield chunk
    finally:
        cursor.close()
        driver.rollback()  # end the read's transaction (PostgreSQL); nothing to undo


def _local_days(quarter: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """Quarter hours (UTC) → local calendar day numbers. Offsets are looked up once per distinct
    quarter hour (time zones change offset on quarter hours)."""
    distinct, inverse = np.unique(quarter, return_inverse=True)
    offsets = np.array(
        [
            int(datetime.fromtimestamp(int(q) * QUARTER_HOUR_SECONDS, zone).utcoffset().total_seconds())  # type: ignore[union-attr]
            for q in distinct
        ],
        dtype=np.int64,
    )
    return (quarter * QUARTER_HOUR_SECONDS + offsets[inverse.ravel()]) // 86_400


def _sum_per_day(
    customer: np.ndarray, day: np.ndarray, revenue: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (customer, day), sorted, with the day's revenue summed."""
    order = np.lexsort((day, customer))
    customer, day, revenue = customer[order], day[order], revenue[order]
    starts = _starts(customer, day)
    return customer[starts], day[starts], np.add.reduceat(revenue, starts) if len(starts) else revenue


def _starts(*keys: np.ndarray) -> np.ndarray:
    """Where each run of equal (sorted) keys begins."""
    n = len(keys[0])
    if n == 0:
        return np.array([], dtype=np.int64)
    changed = np.zeros(n, dtype=bool)
    changed[0] = True
    for key in keys:
        changed[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(changed)


def summarize(days: PurchaseDays, cutoff: date | None = None, unit: str = "days") -> Summary:
    """The RFM summary as of the end of `cutoff` (default: the last day read), from days up to it."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    cutoff = cutoff or days.until
    keep = days.day <= day_number(cutoff)
    customer, day, revenue = days.customer[keep], days.day[keep], days.revenue[keep]
    starts = _starts(customer)
    ends = np.r_[starts[1:], len(customer)] - 1 if len(starts) else starts
    purchase_days = np.diff(np.r_[starts, len(customer)])
    frequency = (purchase_days - 1).astype(np.float64)
    first, last = day[starts], day[ends]
    repeat_revenue = (np.add.reduceat(revenue, starts) - revenue[starts]) if len(starts) else revenue[:0]
    monetary = np.divide(repeat_revenue, frequency, out=np.zeros_like(frequency), where=frequency > 0)
    scale = UNITS[unit]
    return Summary(
        profile_ids=days.profile_ids[customer[starts]],
        customers=customer[starts],
        frequency=frequency,
        recency=(last - first) / scale,
        T=(day_number(cutoff) - first) / scale,
        monetary=monetary,
        cutoff=cutoff,
        unit=unit,
    )


def purchases_between(days: PurchaseDays, after: date, until: date) -> tuple[np.ndarray, np.ndarray]:
    """Purchase days and revenue per customer (indexed like `days.profile_ids`) on the days after
    `after` up to and including `until`: what happened in a holdout period."""
    keep = (days.day > day_number(after)) & (days.day <= day_number(until))
    n = len(days.profile_ids)
    count = np.bincount(days.customer[keep], minlength=n).astype(np.float64)
    revenue = np.bincount(days.customer[keep], weights=days.revenue[keep], minlength=n)
    return count, revenue
