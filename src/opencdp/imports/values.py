"""Parsing one cell by its declared column type.

CSV cells are text; JSON Lines and API rows may carry JSON numbers and booleans too. A value that
does not fit its type raises BadValue, and the row is rejected with a reason naming the column.
Dates become "YYYY-MM-DD", date-times ISO-8601 in UTC, so traits look the same as collected ones.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from opencdp.collect.messages import iso

TRUE = frozenset({"true", "t", "yes", "y", "1"})
FALSE = frozenset({"false", "f", "no", "n", "0"})


class BadValue(ValueError):
    """The value does not fit the column's type; the message says what was expected."""


def is_empty(raw: Any) -> bool:
    """Empty cells (and JSON null) mean "no value": not written, and rejected only if required."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _show(raw: Any) -> str:
    """A value as quoted in a reason: text quoted and shortened, JSON numbers as they are."""
    if not isinstance(raw, str):
        return repr(raw)[:40]
    return repr(raw[:40] + "…") if len(raw) > 40 else repr(raw)


def _text(raw: Any, expected: str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    raise BadValue(f"{_show(raw)} is not {expected}")


def parse_string(raw: Any) -> str:
    if isinstance(raw, str):
        value = raw.strip()
    elif isinstance(raw, bool):
        value = "true" if raw else "false"
    elif isinstance(raw, int | float):
        value = str(raw)
    else:
        raise BadValue(f"must be text, got {type(raw).__name__}")
    if "\x00" in value:
        raise BadValue("contains a NUL character")
    return value


def parse_integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise BadValue(f"{_show(raw)} is not an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    text = _text(raw, "an integer")
    try:
        if "_" in text:
            raise ValueError
        return int(text)
    except ValueError:
        raise BadValue(f"{_show(text)} is not an integer") from None


def parse_number(raw: Any, decimal_separator: str = ".") -> int | float:
    if isinstance(raw, bool):
        raise BadValue(f"{_show(raw)} is not a number")
    if isinstance(raw, int | float):
        value: int | float = raw
    else:
        text = _text(raw, "a number")
        if decimal_separator == ",":
            if "." in text:
                raise BadValue(f"{_show(text)} is not a number with decimal comma (e.g. 12,50)")
            text = text.replace(",", ".")
        try:
            if "_" in text:
                raise ValueError
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise BadValue(f"{_show(raw)} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(f"{_show(raw)} is not a finite number")
    return value


def parse_boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = _text(raw, "a boolean").lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadValue(f"{_show(raw)} is not a boolean (true/false, yes/no, 1/0)")


def parse_date(raw: Any, fmt: str | None) -> date:
    text = _text(raw, "a date")
    try:
        return datetime.strptime(text, fmt).date() if fmt else date.fromisoformat(text)
    except ValueError:
        raise BadValue(f"{_show(text)} is not a date in the format {fmt or 'YYYY-MM-DD'}") from None


def parse_datetime(raw: Any, fmt: str | None, zone: tzinfo) -> datetime:
    """An aware datetime; values without an offset are in the mapping's time zone."""
    text = _text(raw, "a date-time")
    try:
        moment = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except ValueError:
        raise BadValue(f"{_show(text)} is not a date-time in the format {fmt or 'ISO-8601'}") from None
    return (moment.replace(tzinfo=zone) if moment.tzinfo is None else moment).astimezone(UTC)


def midnight(day: date, zone: tzinfo) -> datetime:
    """The start of a day in the mapping's time zone, as an instant."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def parse_value(raw: Any, kind: str, fmt: str | None, zone: tzinfo, decimal_separator: str) -> Any:
    """The typed value of a non-empty cell; date/datetime come back as date/datetime objects."""
    if kind == "string":
        return parse_string(raw)
    if kind == "integer":
        return parse_integer(raw)
    if kind == "number":
        return parse_number(raw, decimal_separator)
    if kind == "boolean":
        return parse_boolean(raw)
    if kind == "date":
        return parse_date(raw, fmt)
    if kind == "datetime":
        return parse_datetime(raw, fmt, zone)
    raise AssertionError(f"unknown column type {kind!r}")


def as_json(value: Any) -> Any:
    """How a typed value is written into an event."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
