"""Computing trait values from a profile's events (pure functions, shared by the live update and
the full refresh)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from opencdp.segments.oracle import OracleEvent, value_matches
from opencdp.traits.definitions import ComputedTrait


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def compute(definition: ComputedTrait, events: Sequence[OracleEvent], now: datetime) -> Any:
    """The value of one definition over one profile's events (None: leave the trait unset)."""
    flt = definition.filter
    cutoff = now - timedelta(days=definition.window_days) if definition.window_days else None
    matching = [
        e
        for e in events
        if (flt.event is None or e.name == flt.event)
        and (flt.types is None or e.type in flt.types)
        and (cutoff is None or e.ts >= cutoff)
        and all(value_matches(e.properties, p.property, p) for p in flt.where)
    ]
    kind, prop = definition.kind, definition.property
    if kind == "count":
        return len(matching)
    if kind in ("first", "last"):
        if not matching:
            return None
        chosen = min(matching, key=lambda e: e.ts) if kind == "first" else max(matching, key=lambda e: e.ts)
        return chosen.properties.get(prop) if prop else chosen.ts.isoformat().replace("+00:00", "Z")
    assert prop is not None
    values = [e.properties.get(prop) for e in matching]
    if kind in ("sum", "avg", "min", "max"):
        numbers = [n for n in map(_number, values) if n is not None]
        if kind == "sum":
            return round(sum(numbers), 6)
        if not numbers:
            return None
        return round({"avg": sum(numbers) / len(numbers), "min": min(numbers), "max": max(numbers)}[kind], 6)
    scalars = [v for v in values if isinstance(v, str | int | float) and not isinstance(v, bool)]
    if kind == "most_frequent":
        if not scalars:
            return None
        counts = Counter(scalars)
        return min(counts, key=lambda v: (-counts[v], str(v)))
    return sorted(set(scalars), key=str)[:100]  # distinct


def _score(value: float, bounds: Iterable[float]) -> int:
    """1 + how many ascending bounds the value reaches."""
    return 1 + sum(value >= b for b in bounds)


def derive(values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """RFM and engagement from the computed traits."""
    out: dict[str, Any] = {}
    last = values.get("last_order_at")
    if isinstance(last, str):
        days = max(0, (now - datetime.fromisoformat(last)).days)
        out["rfm_recency_days"] = days
        r = 5 if days <= 30 else 4 if days <= 60 else 3 if days <= 120 else 2 if days <= 240 else 1
        f = _score(float(values.get("orders_last_365_days") or 0), (2, 3, 5, 10))
        m = _score(float(values.get("total_revenue") or 0), (75, 200, 500, 1000))
        out.update(rfm_r=r, rfm_f=f, rfm_m=m, rfm_score=f"{r}{f}{m}", rfm_segment=_rfm_segment(r, f))
    activity = (
        1.0 * min(values.get("web_activity_30_days") or 0, 30)
        + 4.0 * min(values.get("email_opens_30_days") or 0, 8)
        + 8.0 * min(values.get("email_clicks_30_days") or 0, 5)
        + 8.0 * min(values.get("sms_replies_30_days") or 0, 5)
        + 10.0 * min(values.get("calls_30_days") or 0, 3)
    )
    out["engagement_score"] = round(min(100.0, activity), 1)
    return out


def _rfm_segment(r: int, f: int) -> str:
    if r >= 4 and f >= 4:
        return "Champions"
    if f >= 4:
        return "Loyal"
    if r >= 4 and f >= 2:
        return "Potential loyalist"
    if r >= 4:
        return "New"
    if r <= 2 and f >= 3:
        return "At risk"
    if r <= 2:
        return "Hibernating"
    return "Needs attention"


def compute_all(
    definitions: Sequence[ComputedTrait], events: Sequence[OracleEvent], now: datetime
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for definition in definitions:
        value = compute(definition, events, now)
        if value is not None:
            values[definition.name] = value
    values.update(derive(values, now))
    return values
