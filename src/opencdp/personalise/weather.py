"""Weather by region and day, imported (no network at run time), as external context for decisions.

Rows come from `opencdp weather import FILE.csv` or `POST /api/weather`: region (an ISO 3166 code
such as "DE" or a subdivision such as "DE-BE", stored upper-case), day (YYYY-MM-DD), condition
(free text such as "rain", stored lower-case) and temperature_c (optional). A row for a region and
day that is already stored replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from opencdp.store.dialect import upsert
from opencdp.store.schema import weather

COLUMNS = ("region", "day", "condition", "temperature_c")
#: rows per INSERT … ON CONFLICT statement
BATCH = 500


class WeatherRowError(ValueError):
    """A row that cannot be stored; `field` is the column at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Weather:
    region: str
    day: str
    condition: str
    temperature_c: float | None


def lookup(conn: sa.Connection, regions: list[str], day: str) -> Weather | None:
    """The weather of the most specific region that has a row for `day` ("DE-BE" before "DE")."""
    wanted = [r.strip().upper() for r in regions if r and r.strip()]
    if not wanted:
        return None
    rows = conn.execute(
        sa.select(weather.c.region, weather.c.condition, weather.c.temperature_c).where(
            weather.c.day == day, weather.c.region.in_(wanted)
        )
    ).all()
    found = {r.region: r for r in rows}
    for region in wanted:
        if region in found:
            row = found[region]
            return Weather(region, day, row.condition, row.temperature_c)
    return None


def _text(raw: Mapping[str, Any], name: str, longest: int) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise WeatherRowError(name, "is required")
    if not isinstance(value, str):
        raise WeatherRowError(name, "must be text")
    value = value.strip()
    if "\x00" in value or not value.isprintable():
        raise WeatherRowError(name, "may not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WeatherRowError(name, "may not contain unpaired surrogates") from None
    if len(value) > longest:
        raise WeatherRowError(name, f"is longer than {longest} characters")
    return value


def parse_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One row as stored (without imported_at), or WeatherRowError naming the field."""
    region = _text(raw, "region", 64).upper()
    day_text = _text(raw, "day", 10)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        day = None
    if day is None or len(day_text) != 10:
        raise WeatherRowError("day", f"must be a date as YYYY-MM-DD, got {day_text!r}")
    condition = _text(raw, "condition", 32).lower()
    temperature = raw.get("temperature_c")
    if temperature is None or (isinstance(temperature, str) and not temperature.strip()):
        celsius = None
    else:
        try:
            if isinstance(temperature, bool):
                raise ValueError
            celsius = float(temperature.strip() if isinstance(temperature, str) else temperature)
        except (TypeError, ValueError):
            raise WeatherRowError("temperature_c", f"must be a number, got {temperature!r}") from None
        if not math.isfinite(celsius) or not -100 <= celsius <= 70:
            raise WeatherRowError(
                "temperature_c", f"must be between -100 and 70 degrees, got {temperature!r}"
            )
    return {"region": region, "day": day.isoformat(), "condition": condition, "temperature_c": celsius}


def store(conn: sa.Connection, rows: Iterable[dict[str, Any]], now: datetime | None = None) -> int:
    """Upsert parsed rows (a later row for the same region and day wins); returns how many."""
    now = now or datetime.now(UTC)
    statement = upsert(
        conn.dialect.name, weather, ["region", "day"], ["condition", "temperature_c", "imported_at"]
    )
    count = 0
    batch: dict[tuple[str, str], dict[str, Any]] = {}

    def flush() -> None:
        if batch:
            conn.execute(statement, list(batch.values()))
            batch.clear()

    for row in rows:
        batch[(row["region"], row["day"])] = {**row, "imported_at": now}
        count += 1
        if len(batch) >= BATCH:
            flush()
    flush()
    return count


def listing(
    conn: sa.Connection, region: str | None = None, day: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Stored rows by region, newest day first."""
    query = sa.select(weather).order_by(weather.c.region, weather.c.day.desc())
    if region:
        query = query.where(weather.c.region == region.strip().upper())
    if day:
        query = query.where(weather.c.day == day)
    if limit:
        query = query.limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]
