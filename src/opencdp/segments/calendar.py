"""Calendar days in the criteria language: "in March 1997", "between 1 and 15 December",
"before 2026-01-01".

Every calendar form becomes one half-open window of UTC instants, `[start, end)`, either side
optional, computed here in Python: the SQL compiler binds `start` and `end` as parameters and the
oracle compares with them, so both agree by construction and no engine converts time zones. A
calendar day runs from its midnight to the next in the condition's time zone (`tz`, an IANA name,
default UTC); see "Calendar dates" in docs/segments.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The calendar forms, each naming one or two days (`between`) or a month (`in_month`).
CalendarOp = Literal["on", "after", "on_or_after", "before", "on_or_before", "between", "in_month"]
CALENDAR_OPS: tuple[str, ...] = get_args(CalendarOp)
#: Calendar days outside these years are refused (no overflow at the edges of `datetime`).
FIRST_YEAR, LAST_YEAR = 1900, 2999

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")


#: Said when `tz` comes without a calendar form.
TZ_ALONE = "'tz' is the time zone of calendar days: use it with 'on', 'between', 'before', …"


class FieldProblem(ValueError):
    """A validation problem of one field of a model, raised where pydantic only knows the model
    (a model validator): `language` adds `field` to the error's path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


def parse_day(text: Any) -> date:
    if text == "":
        raise ValueError("choose a day (YYYY-MM-DD)")
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise ValueError(f"{text!r} is not a calendar date: write YYYY-MM-DD, e.g. 2026-12-01")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text} is not a day of the calendar") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"{text}: dates from {FIRST_YEAR} to {LAST_YEAR} are supported")
    return day


def parse_month(text: Any) -> date:
    """The first day of the month `YYYY-MM`."""
    if text == "":
        raise ValueError("choose a month (YYYY-MM)")
    if not isinstance(text, str) or not _MONTH.fullmatch(text):
        raise ValueError(f"{text!r} is not a month: write YYYY-MM, e.g. 1997-03")
    month = int(text[5:])
    if not 1 <= month <= 12:
        raise ValueError(f"{text}: the month must be 01 to 12")
    return parse_day(f"{text}-01")


def parse_zone(name: Any) -> tzinfo:
    if not isinstance(name, str) or not _ZONE.fullmatch(name) or len(name) > 64:
        raise ValueError(f"{name!r} is not a time zone name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def check_day(text: str) -> str:
    parse_day(text)
    return text


def check_month(text: str) -> str:
    parse_month(text)
    return text


def check_zone(name: str) -> str:
    parse_zone(name)
    return name


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


@dataclass(frozen=True)
class Window:
    """UTC instants `start <= t < end`; None: unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None
    #: The same window as calendar days, `first_day <= d < end_day`, for date-only values.
    first_day: date | None = None
    end_day: date | None = None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (self.end is None or moment < self.end)

    def intersect(self, other: Window) -> Window:
        def later(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else max(a, b)

        def earlier(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else min(a, b)

        return Window(
            later(self.start, other.start),
            earlier(self.end, other.end),
            later(self.first_day, other.first_day),
            earlier(self.end_day, other.end_day),
        )

    @property
    def empty(self) -> bool:
        return self.first_day is not None and self.end_day is not None and self.first_day >= self.end_day


def days_window(first_day: date | None, end_day: date | None, zone: tzinfo) -> Window:
    """The days `first_day <= d < end_day` as UTC instants from midnight to midnight in `zone`."""

    def midnight(day: date | None) -> datetime | None:
        if day is None:
            return None
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    return Window(midnight(first_day), midnight(end_day), first_day, end_day)


def calendar_window(op: str, value: Any, zone_name: str | None) -> Window:
    """One calendar form (`op` from CALENDAR_OPS) as a window; the value is already validated."""
    zone = parse_zone(zone_name) if zone_name else UTC
    one = timedelta(days=1)
    if op == "between":
        first, last = parse_day(value[0]), parse_day(value[1])
        return days_window(first, last + one, zone)
    if op == "in_month":
        first = parse_month(value)
        return days_window(first, _next_month(first), zone)
    day = parse_day(value)
    bounds = {
        "on": (day, day + one),
        "after": (day + one, None),
        "on_or_after": (day, None),
        "before": (None, day),
        "on_or_before": (None, day + one),
    }[op]
    return days_window(*bounds, zone)


def check_calendar_value(op: str, value: Any) -> None:
    """Raises ValueError in words when `value` does not fit the calendar form `op`."""
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("'between' needs two calendar dates, [first day, last day], both included")
        first, last = parse_day(value[0]), parse_day(value[1])
        if first > last:
            raise ValueError(
                f"the range is empty: {value[0]} is after {value[1]} (write the earlier day first)"
            )
    elif op == "in_month":
        parse_month(value)
    else:
        parse_day(value)


#: The calendar keys of an event condition: a lower bound, an upper bound, or one alone.
_LOWER, _UPPER, _ALONE = ("after", "on_or_after"), ("before", "on_or_before"), ("on", "between", "in_month")


def event_window(forms: dict[str, Any], zone_name: str | None) -> Window:
    """The window of an event condition's calendar keys (`forms`: key → value), all of them."""
    window = Window()
    for key, value in forms.items():
        window = window.intersect(calendar_window(key, value, zone_name))
    return window


def check_event_window(forms: dict[str, Any], tz: str | None, within_days: bool, first_last: bool) -> None:
    """Raises FieldProblem for calendar keys that do not make one window on an event condition."""
    keys = list(forms)
    if not keys:
        if tz is not None:
            raise FieldProblem("tz", TZ_ALONE)
        return
    first = keys[0]
    if within_days:
        raise FieldProblem(
            first,
            f"'within_days' counts back from now and '{first}' names calendar days: use one or the other",
        )
    if first_last:
        raise FieldProblem(
            first,
            "first_occurred/last_occurred carry their own dates, "
            'e.g. {"op": "before", "value": "2026-01-01"}',
        )
    alone = [k for k in keys if k in _ALONE]
    if alone and len(keys) > 1:
        other = next(k for k in keys if k != alone[0])
        raise FieldProblem(other, f"'{alone[0]}' stands alone: it cannot be combined with '{other}'")
    for pair in (_LOWER, _UPPER):
        if all(k in keys for k in pair):
            raise FieldProblem(pair[1], f"give only one of '{pair[0]}' and '{pair[1]}'")
    if "between" in forms:
        try:
            check_calendar_value("between", forms["between"])
        except ValueError as exc:
            raise FieldProblem("between", str(exc)) from None
    if event_window(forms, tz).empty:
        lower = next(k for k in keys if k in _LOWER)
        upper = next(k for k in keys if k in _UPPER)
        raise FieldProblem(
            upper,
            f"the range is empty: no day is {lower.replace('_', ' ')} {forms[lower]} "
            f"and {upper.replace('_', ' ')} {forms[upper]}",
        )


# --- date-valued text (traits, computed traits, properties) --------------------------------------
#: A calendar date as text: compared as a day, whatever the condition's time zone.
DATE_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
#: A moment in UTC as text (as `first_order_at` is written): compared as an instant; only the first
#: 19 characters (to the second) are compared, which is exact because every bound is a whole second.
UTC_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}.*Z"
_DATE_TEXT = re.compile(DATE_TEXT)
_UTC_TEXT = re.compile(UTC_TEXT, re.DOTALL)


def second_text(moment: datetime) -> str:
    """A whole-second UTC instant as the first 19 characters of its ISO text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def text_in_window(value: Any, window: Window) -> bool:
    """The plain-Python meaning of a calendar op on a text value (see `compiler.date_text_test`)."""
    if not isinstance(value, str):
        return False
    if _DATE_TEXT.fullmatch(value):
        first = window.first_day.isoformat() if window.first_day else None
        end = window.end_day.isoformat() if window.end_day else None
        return (first is None or value >= first) and (end is None or value < end)
    if _UTC_TEXT.fullmatch(value):
        second = value[:19]
        start = second_text(window.start) if window.start else None
        end_at = second_text(window.end) if window.end else None
        return (start is None or second >= start) and (end_at is None or second < end_at)
    return False
