"""The form report: per form, which fields visitors reach, finish, fail and leave at.

Computed from the form events in `profile_events` (see `personalise/forms.py` for the events and
their properties) over the last `days` days, optionally for the current members of one segment. A
*visitor* is a profile (an anonymous visitor has one too). Per form:

- **visitors**: profiles with any event of the form; **submitted**: those with a `Form Submitted`
  (and **submits**, the events); **abandoned**: those whose latest `Form Abandoned` came after their
  last submit (or who never submitted).
- per field, in the order visitors reach them (each field's average position among the fields a
  visitor touched, in order of first touch; ties by name):
  - **reached**: visitors with a focus, change or error on the field;
  - **completed**: visitors whose last change of the field has no error of the field after it;
  - **errored**: visitors with at least one error on the field, **errors** the events, and the
    **error rate** errored / reached;
  - **abandoned**: abandoning visitors (above) whose latest `Form Abandoned` names the field;
  - **median seconds**: the median time from a focus on the field to the visitor's next event of
    the form (gaps longer than the session gap, when the visitor left, are not time on a field).
- **errors**: the most frequent (field, message) pairs.

The events are read once per report and counted here, the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opencdp.personalise.forms import (
    FIELD_CHANGED,
    FIELD_ERRORED,
    FIELD_FOCUSED,
    FORM_ABANDONED,
    FORM_EVENTS,
    FORM_SUBMITTED,
)
from opencdp.store.dialect import json_text
from opencdp.store.schema import profile_events, segment_memberships, segments

FIELD_EVENTS = (FIELD_FOCUSED, FIELD_CHANGED, FIELD_ERRORED)
TOP_ERRORS = 10
#: a focus followed by nothing of the form for longer than this is a visitor who left, not dwell
MAX_FIELD_SECONDS = 30 * 60


class UnknownSegment(LookupError):
    pass


@dataclass(frozen=True)
class FormEvent:
    profile_id: str
    name: str
    ts: datetime
    form_id: str
    field: str | None
    message: str | None


@dataclass
class FieldStats:
    field: str
    reached: int = 0
    completed: int = 0
    errored: int = 0
    errors: int = 0
    abandoned: int = 0
    median_seconds: float | None = None
    messages: list[dict[str, Any]] = dc_field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return round(self.errored / self.reached, 4) if self.reached else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "reached": self.reached,
            "completed": self.completed,
            "errored": self.errored,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "abandoned": self.abandoned,
            "median_seconds": self.median_seconds,
            "messages": self.messages,
        }


@dataclass
class FormReport:
    form_id: str
    since: datetime
    until: datetime
    segment: str | None
    visitors: int
    submitted: int
    submits: int
    abandoned: int
    fields: list[FieldStats]
    errors: list[dict[str, Any]]

    @property
    def conversion(self) -> float:
        return round(self.submitted / self.visitors, 4) if self.visitors else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "form_id": self.form_id,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "segment": self.segment,
            "visitors": self.visitors,
            "submitted": self.submitted,
            "submits": self.submits,
            "abandoned": self.abandoned,
            "conversion": self.conversion,
            "fields": [f.as_json() for f in self.fields],
            "errors": self.errors,
        }


def _window(days: int, now: datetime | None) -> tuple[datetime, datetime]:
    until = (now or datetime.now(UTC)).astimezone(UTC)
    return until - timedelta(days=days), until


def _segment_id(conn: sa.Connection, segment: str) -> int:
    found = conn.execute(sa.select(segments.c.id).where(segments.c.name == segment)).scalar()
    if found is None:
        raise UnknownSegment(segment)
    return int(found)


def _read(
    conn: sa.Connection, since: datetime, until: datetime, segment: str | None, form_id: str | None
) -> list[FormEvent]:
    pe = profile_events
    query = sa.select(pe.c.profile_id, pe.c.name, pe.c.ts, pe.c.properties).where(
        pe.c.name.in_(FORM_EVENTS), pe.c.ts >= since, pe.c.ts <= until
    )
    if form_id is not None:
        query = query.where(json_text(pe.c.properties, "form_id") == form_id)
    if segment is not None:
        members = sa.select(segment_memberships.c.profile_id).where(
            segment_memberships.c.segment_id == _segment_id(conn, segment),
            segment_memberships.c.exited_at.is_(None),
        )
        query = query.where(pe.c.profile_id.in_(members))
    out: list[FormEvent] = []
    for profile_id, name, ts, props in conn.execute(query.order_by(pe.c.ts, pe.c.event_id)):
        props = props if isinstance(props, dict) else {}
        form = props.get("form_id")
        if not isinstance(form, str) or not form:
            continue
        fld = props.get("field")
        message = props.get("message")
        out.append(
            FormEvent(
                profile_id,
                name,
                ts,
                form,
                fld if isinstance(fld, str) and fld else None,
                message if isinstance(message, str) else None,
            )
        )
    return out


def compute(
    form_id: str, events: Iterable[FormEvent]
) -> tuple[int, int, int, int, list[FieldStats], list[dict[str, Any]]]:
    """(visitors, submitted, submits, abandoned, fields, errors) of one form's events."""
    by_visitor: dict[str, list[FormEvent]] = defaultdict(list)
    for e in events:
        if e.form_id == form_id:
            by_visitor[e.profile_id].append(e)
    for evs in by_visitor.values():
        evs.sort(key=lambda e: e.ts)  # stable: ties keep the log's order

    stats: dict[str, FieldStats] = {}
    positions: dict[str, list[int]] = defaultdict(list)
    durations: dict[str, list[float]] = defaultdict(list)
    messages: Counter[tuple[str, str]] = Counter()
    submitted = submits = abandoned = 0

    def of(name: str) -> FieldStats:
        return stats.setdefault(name, FieldStats(name))

    for evs in by_visitor.values():
        order: list[str] = []
        last_change: dict[str, datetime] = {}
        last_error: dict[str, datetime] = {}
        error_fields: set[str] = set()
        last_submit: datetime | None = None
        last_abandon: FormEvent | None = None
        for i, e in enumerate(evs):
            if e.name == FORM_SUBMITTED:
                submits += 1
                last_submit = e.ts
            elif e.name == FORM_ABANDONED:
                last_abandon = e
            if e.field is None or e.name not in FIELD_EVENTS:
                continue
            if e.field not in order:
                order.append(e.field)
            if e.name == FIELD_CHANGED:
                last_change[e.field] = e.ts
            elif e.name == FIELD_ERRORED:
                last_error[e.field] = e.ts
                error_fields.add(e.field)
                of(e.field).errors += 1
                messages[(e.field, e.message or "")] += 1
            elif e.name == FIELD_FOCUSED and i + 1 < len(evs):
                seconds = (evs[i + 1].ts - e.ts).total_seconds()
                if seconds <= MAX_FIELD_SECONDS:
                    durations[e.field].append(seconds)
        for position, name in enumerate(order):
            s = of(name)
            s.reached += 1
            positions[name].append(position)
            changed = last_change.get(name)
            if changed is not None and not (name in last_error and last_error[name] >= changed):
                s.completed += 1
        for name in error_fields:
            of(name).errored += 1
        if last_submit is not None:
            submitted += 1
        if last_abandon is not None and (last_submit is None or last_abandon.ts > last_submit):
            abandoned += 1
            if last_abandon.field:
                of(last_abandon.field).abandoned += 1

    for name, s in stats.items():
        if durations.get(name):
            s.median_seconds = round(statistics.median(durations[name]), 3)
        s.messages = [
            {"message": m, "count": n}
            for (f, m), n in sorted(messages.items(), key=lambda kv: (-kv[1], kv[0]))
            if f == name
        ][:3]

    def rank(s: FieldStats) -> tuple[float, str]:
        at = positions.get(s.field)
        return (sum(at) / len(at) if at else float("inf"), s.field)

    fields = sorted(stats.values(), key=rank)
    errors = [
        {"field": f, "message": m, "count": n}
        for (f, m), n in sorted(messages.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERRORS]
    ]
    return len(by_visitor), submitted, submits, abandoned, fields, errors


def form_report(
    engine: sa.Engine,
    form_id: str,
    *,
    days: int = 30,
    segment: str | None = None,
    now: datetime | None = None,
) -> FormReport:
    """One form's report. UnknownSegment when `segment` names none."""
    since, until = _window(days, now)
    with engine.connect() as conn:
        events = _read(conn, since, until, segment, form_id)
    visitors, submitted, submits, abandoned, fields, errors = compute(form_id, events)
    return FormReport(form_id, since, until, segment, visitors, submitted, submits, abandoned, fields, errors)


def list_forms(
    engine: sa.Engine, *, days: int = 30, segment: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every form with events in the window: visitors, submitted, abandoned, errors, last seen."""
    since, until = _window(days, now)
    with engine.connect() as conn:
        events = _read(conn, since, until, segment, None)
    by_form: dict[str, list[FormEvent]] = defaultdict(list)
    for e in events:
        by_form[e.form_id].append(e)
    out: list[dict[str, Any]] = []
    for form_id, evs in by_form.items():
        visitors, submitted, _submits, abandoned, fields, _errors = compute(form_id, evs)
        out.append(
            {
                "form_id": form_id,
                "visitors": visitors,
                "submitted": submitted,
                "abandoned": abandoned,
                "conversion": round(submitted / visitors, 4) if visitors else 0.0,
                "errors": sum(f.errors for f in fields),
                "fields": len(fields),
                "last_seen": max(e.ts for e in evs).isoformat(),
            }
        )
    out.sort(key=lambda f: (-f["visitors"], f["form_id"]))
    return out
