"""Form analytics: the field-level events the first-party script sends, and the real-time
"struggling" signal decisions and journeys use.

Events follow Segment's naming style; their properties name the form and field, never a value:

| event | properties |
|---|---|
| `Form Field Focused` | `form_id`, `field` |
| `Form Field Changed` | `form_id`, `field` |
| `Form Field Errored` | `form_id`, `field`, `message` (the validation message shown) |
| `Form Submitted` | `form_id` |
| `Form Abandoned` | `form_id`, `field` (the last field touched) |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from opencdp.personalise.sessions import SessionEvent

FIELD_FOCUSED = "Form Field Focused"
FIELD_CHANGED = "Form Field Changed"
FIELD_ERRORED = "Form Field Errored"
FORM_SUBMITTED = "Form Submitted"
FORM_ABANDONED = "Form Abandoned"
FORM_EVENTS = (FIELD_FOCUSED, FIELD_CHANGED, FIELD_ERRORED, FORM_SUBMITTED, FORM_ABANDONED)


@dataclass(frozen=True)
class StruggleRule:
    """A visitor struggles with a form when one field errs `errors` times within `window`, or when
    they stay on one field `dwell` without a change, an error or a submit (and the form was not
    submitted since)."""

    errors: int = 2
    window: timedelta = timedelta(seconds=60)
    dwell: timedelta = timedelta(seconds=90)


DEFAULT_RULE = StruggleRule()


@dataclass(frozen=True)
class Struggle:
    form_id: str
    field: str
    reason: str  # "errors" or "dwell"


def struggling(
    events: Iterable[SessionEvent], now: datetime, rule: StruggleRule = DEFAULT_RULE
) -> Struggle | None:
    """The form and field a visitor struggles with right now, or None. Only events of forms not
    submitted after the struggle count; a signal older than the rule's window has passed."""
    ordered = sorted((e for e in events if e.name in FORM_EVENTS and e.ts <= now), key=lambda e: e.ts)
    submitted: dict[str, datetime] = {}
    for e in ordered:
        form = _form(e)
        if e.name == FORM_SUBMITTED and form:
            submitted[form] = e.ts
    errors: dict[tuple[str, str], list[datetime]] = {}
    for e in ordered:
        form, name = _form(e), e.properties.get("field")
        if e.name != FIELD_ERRORED or not form or not isinstance(name, str):
            continue
        if form in submitted and submitted[form] >= e.ts:
            continue
        if now - e.ts > rule.window:
            continue
        errors.setdefault((form, name), []).append(e.ts)
    for (form, name), times in errors.items():
        if len(times) >= rule.errors and times[-1] - times[-rule.errors] <= rule.window:
            return Struggle(form, name, "errors")
    return _dwelling(ordered, now, rule, submitted)


def _dwelling(
    ordered: Sequence[SessionEvent], now: datetime, rule: StruggleRule, submitted: dict[str, datetime]
) -> Struggle | None:
    """The last form event is a focus on a field, long enough ago, with no progress since."""
    if not ordered:
        return None
    last = ordered[-1]
    form, name = _form(last), last.properties.get("field")
    if last.name != FIELD_FOCUSED or not form or not isinstance(name, str):
        return None
    if form in submitted and submitted[form] >= last.ts:
        return None
    if rule.dwell <= now - last.ts <= rule.dwell + rule.window:
        return Struggle(form, name, "dwell")
    return None


def _form(event: SessionEvent) -> str | None:
    form = event.properties.get("form_id")
    return form if isinstance(form, str) and form else None
