"""Weather by region and day, imported (no network at run time), as external context for decisions."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from opencdp.store.schema import weather


@dataclass(frozen=True)
class Weather:
    region: str
    day: str
    condition: str
    temperature_c: float | None


def lookup(conn: sa.Connection, regions: list[str], day: str) -> Weather | None:
    """The weather of the most specific region that has a row for `day` ("DE-BE" before "DE")."""
    wanted = [r for r in regions if r]
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
