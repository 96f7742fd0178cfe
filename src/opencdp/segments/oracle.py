"""Plain-Python evaluation of criteria: the reference the SQL compiler is tested against, and
the shortest statement of what each operator means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from opencdp.segments.calendar import CALENDAR_OPS, text_in_window
from opencdp.segments.language import (
    And,
    ComputedCondition,
    CountTest,
    EventCondition,
    Not,
    Or,
    PredictedCondition,
    SegmentRef,
    TraitCondition,
    _ValueTest,
    parse_criteria,
)

_MISSING = object()


@dataclass
class OracleEvent:
    name: str | None
    type: str
    ts: datetime
    properties: dict[str, Any]


@dataclass
class OracleProfile:
    traits: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)
    events: list[OracleEvent] = field(default_factory=list)
    predicted: dict[str, Any] = field(default_factory=dict)


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def value_matches(data: dict[str, Any], key: str, test: _ValueTest) -> bool:
    actual = data.get(key, _MISSING)
    op, expected = test.op, test.value
    if op in CALENDAR_OPS:
        return text_in_window(actual, test.window())
    if op == "exists":
        return actual is not _MISSING and actual is not None
    if op == "not_exists":
        return actual is _MISSING or actual is None
    if op in ("in", "not_in"):
        assert isinstance(expected, list)
        inside = _kind(actual) == _kind(expected[0]) and actual in expected
        return inside if op == "in" else not inside
    if _kind(actual) != _kind(expected):
        return op == "neq"
    if op == "eq":
        return bool(actual == expected)
    if op == "neq":
        return bool(actual != expected)
    if op == "contains":
        return str(expected) in actual
    if op == "starts_with":
        return bool(actual.startswith(expected))
    return {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[op]


def evaluate(
    criteria: Any, profile: OracleProfile, now: datetime, lookup: Callable[[str], Any | None] | None = None
) -> bool:
    if isinstance(criteria, And):
        return all(evaluate(c, profile, now, lookup) for c in criteria.and_)
    if isinstance(criteria, Or):
        return any(evaluate(c, profile, now, lookup) for c in criteria.or_)
    if isinstance(criteria, Not):
        return not evaluate(criteria.not_, profile, now, lookup)
    if isinstance(criteria, TraitCondition):
        return value_matches(profile.traits, criteria.trait, criteria)
    if isinstance(criteria, ComputedCondition):
        return value_matches(profile.computed, criteria.computed, criteria)
    if isinstance(criteria, PredictedCondition):
        return value_matches(profile.predicted, criteria.predicted, criteria)
    if isinstance(criteria, SegmentRef):
        document = lookup(criteria.segment) if lookup else None
        if document is None:
            raise ValueError(f"there is no segment named {criteria.segment!r}")
        return evaluate(parse_criteria(document), profile, now, lookup)
    if isinstance(criteria, EventCondition):
        return _event(criteria, profile, now)
    raise TypeError(f"not a criteria node: {criteria!r}")


def _event(cond: EventCondition, profile: OracleProfile, now: datetime) -> bool:
    matching = [
        e
        for e in profile.events
        if (cond.event is None or e.name == cond.event)
        and (cond.type is None or e.type == cond.type)
        and all(value_matches(e.properties, p.property, p) for p in cond.where)
    ]
    if cond.first_occurred or cond.last_occurred:
        test = cond.first_occurred or cond.last_occurred
        assert test is not None
        if not matching:
            return False
        moment = min(e.ts for e in matching) if cond.first_occurred else max(e.ts for e in matching)
        window = test.window()
        if window is not None:
            return window.contains(moment)
        assert isinstance(test.value, int)
        cutoff = now - timedelta(days=test.value)
        return moment >= cutoff if test.op == "within_days" else moment < cutoff
    if cond.within_days is not None:
        cutoff = now - timedelta(days=cond.within_days)
        matching = [e for e in matching if e.ts >= cutoff]
    if cond.has_calendar:
        window = cond.window()
        matching = [e for e in matching if window.contains(e.ts)]
    return count_holds(cond.count_test, len(matching))


def count_holds(test: CountTest, n: int) -> bool:
    """Whether `n` events satisfy a count test."""
    expected = test.value
    return {
        "gte": n >= expected,
        "gt": n > expected,
        "eq": n == expected,
        "lte": n <= expected,
        "lt": n < expected,
    }[test.op]
