"""When a scheduled entry next happens: "every Monday at 09:00 Europe/Berlin" in UTC, daylight
saving time included (a wall-clock time that a change skips or repeats follows zoneinfo's fold=0)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from opencdp.journeys.definition import Schedule

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def next_occurrence(schedule: Schedule, after: datetime) -> datetime:
    """The first occurrence strictly after `after` (aware), in UTC."""
    zone = ZoneInfo(schedule.timezone)
    local = after.astimezone(zone)
    at = time.fromisoformat(schedule.at)
    for offset in range(0, 9):
        day = local.date() + timedelta(days=offset)
        if schedule.every == "week" and _DAYS[day.weekday()] != schedule.day:
            continue
        candidate = datetime.combine(day, at, tzinfo=zone)
        if candidate.astimezone(UTC) > after:
            return candidate.astimezone(UTC)
    raise AssertionError("a daily or weekly schedule always occurs within 8 days")


def in_quiet_hours(start: str, end: str, zone_name: str, moment: datetime) -> datetime | None:
    """If `moment` falls in the quiet hours, when they end (UTC); else None. A window may span
    midnight (21:00 to 08:00)."""
    zone = ZoneInfo(zone_name)
    local = moment.astimezone(zone)
    begin, finish = time.fromisoformat(start), time.fromisoformat(end)
    now = local.timetz().replace(tzinfo=None)
    if begin <= finish:
        inside = begin <= now < finish
        end_day = local.date()
    else:
        inside = now >= begin or now < finish
        end_day = local.date() + timedelta(days=1) if now >= begin else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, finish, tzinfo=zone).astimezone(UTC)
