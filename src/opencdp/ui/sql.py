"""SQL the dashboard needs that differs between SQLite and PostgreSQL (belongs in `store/dialect.py`
once the dashboard is merged; kept here so this change touches no shared module)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles


class utc_day(sa.sql.functions.FunctionElement[str]):
    """The UTC calendar day of a `UTCDateTime` column as 'YYYY-MM-DD' text, on both engines."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    # SQLite stores naive UTC text 'YYYY-MM-DD HH:MM:SS…': the first ten characters are the day.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def day_range(days: int, now: datetime | None = None) -> tuple[datetime, list[str]]:
    """The start (midnight UTC) of a window of `days` whole days ending today, and each day's label."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    return datetime(first.year, first.month, first.day, tzinfo=UTC), labels


def short_day(label: str) -> str:
    """'2026-11-05' → 'Nov 5' for axis labels."""
    day = date.fromisoformat(label)
    return f"{day:%b} {day.day}"
