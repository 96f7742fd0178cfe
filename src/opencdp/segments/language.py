"""The segment criteria language: JSON documents validated into these models.

    {"and": [
        {"trait": "country", "op": "eq", "value": "DE"},
        {"event": "Order Completed", "where": [{"property": "category", "op": "eq", "value": "shoes"}],
         "within_days": 30, "count": {"op": "gte", "value": 2}},
        {"not": {"event": "Email Opened", "within_days": 7}},
        {"event": "Order Completed", "between": ["2026-12-01", "2026-12-15"], "tz": "Europe/Berlin"},
        {"computed": "first_order_at", "op": "before", "value": "2026-01-01"},
        {"segment": "newsletter subscribers"}
    ]}

Validation errors carry the exact path in the document (e.g. `and.1.count.value`).
Semantics are strict about types: "42" (text) is not 42 (a number); see docs/segments.md.
Size is limited (`MAX_CONDITIONS`, `MAX_DEPTH`): here for the document itself, in the compiler
again with referenced segments expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from opencdp.segments.calendar import (
    CALENDAR_OPS,
    TZ_ALONE,
    CalendarOp,
    FieldProblem,
    Window,
    calendar_window,
    check_calendar_value,
    check_day,
    check_event_window,
    check_month,
    check_zone,
    event_window,
)

Scalar = str | int | float | bool
KEY_PATTERN = r'^[^"\\\x00-\x1f]{1,200}$'

#: At most this many conditions (trait, computed, predicted and event conditions, counting those of
#: referenced segments as often as they are referenced) in one segment. See docs/segments.md#limits.
MAX_CONDITIONS = 200
#: At most this many levels of and/or/not, counting the levels inside referenced segments.
MAX_DEPTH = 10

ValueOp = Literal[
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "exists",
    "not_exists",
    CalendarOp,  # on date-valued text ("2026-03-01" or "2026-03-01T09:30:00Z"): see calendar.py
]

#: A calendar day, "YYYY-MM-DD"; a month, "YYYY-MM"; an IANA time zone name.
CalendarDate = Annotated[str, AfterValidator(check_day)]
CalendarMonth = Annotated[str, AfterValidator(check_month)]
TimeZoneName = Annotated[str, AfterValidator(check_zone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ValueTest(_Strict):
    op: ValueOp = "eq"
    value: Scalar | list[str | int | float] | None = None
    #: The time zone of the calendar days of a calendar op (default UTC).
    tz: TimeZoneName | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> _ValueTest:
        op, value = self.op, self.value
        if self.tz is not None and op not in CALENDAR_OPS:
            raise FieldProblem("tz", TZ_ALONE)
        if op in CALENDAR_OPS:
            try:
                check_calendar_value(op, value)
            except ValueError as exc:
                raise FieldProblem("value", str(exc)) from None
        elif op in ("exists", "not_exists"):
            if value is not None:
                raise FieldProblem("value", f"'{op}' takes no value")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise FieldProblem("value", f"'{op}' needs a non-empty list of strings or numbers")
            if len({isinstance(v, str) for v in value}) > 1:
                raise FieldProblem("value", f"'{op}' needs a list of only strings or only numbers")
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FieldProblem("value", f"'{op}' compares numbers; give a number as value")
        elif op in ("contains", "starts_with"):
            if not isinstance(value, str) or not value:
                raise FieldProblem("value", f"'{op}' needs a non-empty string")
        elif value is None or isinstance(value, list):
            raise FieldProblem("value", f"'{op}' needs a single string, number or boolean")
        return self

    def window(self) -> Window:
        """The calendar window of a calendar op."""
        return calendar_window(self.op, self.value, self.tz)


class TraitCondition(_ValueTest):
    """A profile trait (latest value from identify/context traits)."""

    trait: str = Field(pattern=KEY_PATTERN)


class ComputedCondition(_ValueTest):
    """A computed trait (see `opencdp traits list`)."""

    computed: str = Field(pattern=KEY_PATTERN)


class PredictedCondition(_ValueTest):
    """A predicted trait (see `opencdp predict list`): a score written by a prediction job."""

    predicted: str = Field(pattern=KEY_PATTERN)


class PropertyCondition(_ValueTest):
    property: str = Field(pattern=KEY_PATTERN)


class CountTest(_Strict):
    op: Literal["gte", "gt", "eq", "lte", "lt"] = "gte"
    value: int = Field(1, ge=0, le=1_000_000)


class TimeTest(_Strict):
    """`within_days`: it happened in the last N days; `before_days`: more than N days ago;
    a calendar op (`on`, `after`, `on_or_after`, `before`, `on_or_before`, `between`, `in_month`):
    it happened on those calendar days, in time zone `tz` (default UTC)."""

    op: Literal["within_days", "before_days", CalendarOp]
    value: int | str | list[str]
    tz: TimeZoneName | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> TimeTest:
        if self.op in ("within_days", "before_days"):
            value = self.value
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36_500:
                raise FieldProblem("value", f"'{self.op}' needs a whole number of days from 0 to 36500")
            if self.tz is not None:
                raise FieldProblem("tz", TZ_ALONE)
            return self
        try:
            check_calendar_value(self.op, self.value)
        except ValueError as exc:
            raise FieldProblem("value", str(exc)) from None
        return self

    def window(self) -> Window | None:
        """The calendar window (None for the relative ops, which depend on now)."""
        if self.op in ("within_days", "before_days"):
            return None
        return calendar_window(self.op, self.value, self.tz)


class EventCondition(_Strict):
    """Behaviour: did the profile perform an event (how often, when)."""

    event: str | None = Field(None, min_length=1, max_length=500)
    type: Literal["track", "page", "screen", "identify", "group", "alias"] | None = None
    where: list[PropertyCondition] = Field(default_factory=list, max_length=20)
    within_days: int | None = Field(None, ge=1, le=36_500)
    # Calendar days the counted events happened on (instead of `within_days`), in time zone `tz`:
    on: CalendarDate | None = None
    after: CalendarDate | None = None
    on_or_after: CalendarDate | None = None
    before: CalendarDate | None = None
    on_or_before: CalendarDate | None = None
    between: list[CalendarDate] | None = None
    in_month: CalendarMonth | None = None
    tz: TimeZoneName | None = None
    count: CountTest | None = None
    first_occurred: TimeTest | None = None
    last_occurred: TimeTest | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> EventCondition:
        if self.event is None and self.type is None:
            raise ValueError("name an 'event' (or at least a 'type')")
        measures = [m for m in (self.count, self.first_occurred, self.last_occurred) if m is not None]
        if len(measures) > 1:
            raise ValueError("use only one of 'count', 'first_occurred', 'last_occurred'")
        if self.within_days is not None and (self.first_occurred or self.last_occurred):
            raise ValueError("'within_days' goes with 'count'; first/last_occurred carry their own days")
        self._check_calendar()
        return self

    def _calendar(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CALENDAR_OPS if getattr(self, k) is not None}

    def _check_calendar(self) -> None:
        check_event_window(
            self._calendar(),
            self.tz,
            self.within_days is not None,
            bool(self.first_occurred or self.last_occurred),
        )

    def window(self) -> Window:
        """The calendar window of the counted events (unbounded without calendar keys)."""
        return event_window(self._calendar(), self.tz)

    @property
    def has_calendar(self) -> bool:
        return bool(self._calendar())

    @property
    def count_test(self) -> CountTest:
        return self.count or CountTest()


class SegmentRef(_Strict):
    """Membership in another saved segment (evaluated from its criteria, so never stale)."""

    segment: str = Field(min_length=1, max_length=200)


class And(_Strict):
    and_: list[Criteria] = Field(alias="and", min_length=1, max_length=100)


class Or(_Strict):
    or_: list[Criteria] = Field(alias="or", min_length=1, max_length=100)


class Not(_Strict):
    not_: Criteria = Field(alias="not")


Criteria = Annotated[
    And | Or | Not | TraitCondition | ComputedCondition | PredictedCondition | EventCondition | SegmentRef,
    Field(union_mode="left_to_right"),
]
for _model in (And, Or, Not):
    _model.model_rebuild()

_SHAPES: dict[str, type[BaseModel]] = {
    "and": And,
    "or": Or,
    "not": Not,
    "trait": TraitCondition,
    "computed": ComputedCondition,
    "predicted": PredictedCondition,
    "event": EventCondition,
    "type": EventCondition,
    "segment": SegmentRef,
}


class CriteriaError(ValueError):
    """Invalid criteria; `problems` lists {"path", "problem"} with exact paths in the document."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path'] or '(root)'}: {p['problem']}" for p in problems))
        self.problems = problems


class CriteriaLimitError(CriteriaError):
    """Criteria over a size limit (a 400 like any invalid criteria, never a failing query)."""


def too_many_conditions(path: str = "", expanded: bool = False) -> CriteriaLimitError:
    counted = " (counting the conditions of referenced segments)" if expanded else ""
    return CriteriaLimitError(
        [
            {
                "path": path,
                "problem": f"too many conditions{counted}: at most {MAX_CONDITIONS} are allowed "
                "in one segment (see Limits in docs/segments.md)",
            }
        ]
    )


def too_deep(path: str = "", expanded: bool = False) -> CriteriaLimitError:
    counted = " (counting the levels inside referenced segments)" if expanded else ""
    return CriteriaLimitError(
        [
            {
                "path": path,
                "problem": f"nested too deeply{counted}: at most {MAX_DEPTH} levels of and/or/not "
                "are allowed (see Limits in docs/segments.md)",
            }
        ]
    )


class _Budget:
    """Counts conditions while parsing, so an oversized document is refused after reading
    `MAX_CONDITIONS + 1` of them rather than after validating all."""

    def __init__(self) -> None:
        self.conditions = 0

    def spend(self, path: str) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise too_many_conditions(path)


def parse_criteria(document: Any, path: str = "", shapes: dict[str, type[BaseModel]] | None = None) -> Any:
    """Validate a criteria document, choosing the model by its key so errors point at one shape.
    `shapes` adds condition kinds beyond a segment's (personalisation's session and context)."""
    return _parse(document, path, 0, _Budget(), {**_SHAPES, **(shapes or {})})


def _parse(document: Any, path: str, depth: int, budget: _Budget, shapes: dict[str, type[BaseModel]]) -> Any:
    if not isinstance(document, dict):
        raise CriteriaError([{"path": path, "problem": "must be a JSON object"}])
    kinds = [k for k in shapes if k in document]
    if not kinds:
        names = ", ".join(dict.fromkeys(k for k in shapes if k != "type"))
        raise CriteriaError([{"path": path, "problem": f"needs one of: {names}"}])
    model = shapes[kinds[0]]
    if model in (And, Or, Not) and depth >= MAX_DEPTH:
        raise too_deep(path)
    if model not in (And, Or, Not, SegmentRef):
        budget.spend(path)
    if model in (And, Or):
        key = kinds[0]
        items = document[key]
        if set(document) != {key}:
            raise CriteriaError([{"path": path, "problem": f"'{key}' stands alone in its object"}])
        if not isinstance(items, list) or not items:
            raise CriteriaError(
                [{"path": _join(path, key), "problem": "must be a non-empty list of conditions"}]
            )
        problems: list[dict[str, str]] = []
        children = []
        for i, item in enumerate(items):
            try:
                children.append(_parse(item, _join(path, f"{key}.{i}"), depth + 1, budget, shapes))
            except CriteriaLimitError:
                raise
            except CriteriaError as exc:
                problems += exc.problems
        if problems:
            raise CriteriaError(problems)
        return And.model_construct(and_=children) if model is And else Or.model_construct(or_=children)
    if model is Not:
        if set(document) != {"not"}:
            raise CriteriaError([{"path": path, "problem": "'not' stands alone in its object"}])
        return Not.model_construct(
            not_=_parse(document["not"], _join(path, "not"), depth + 1, budget, shapes)
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise CriteriaError([_problem(path, err) for err in exc.errors()]) from None


def _problem(path: str, err: Any) -> dict[str, str]:
    loc = [str(p) for p in err["loc"]]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):  # raised by a model validator about one of its fields
        loc.append(cause.field)
    return {"path": _join(path, ".".join(loc)), "problem": err["msg"].removeprefix("Value error, ")}


def _join(path: str, more: str) -> str:
    return f"{path}.{more}" if path and more else path or more


def leaves(criteria: Any) -> Iterator[Any]:
    """The conditions of parsed criteria, through every and/or/not (segment references are leaves:
    what they refer to is not expanded here)."""
    if isinstance(criteria, And):
        for part in criteria.and_:
            yield from leaves(part)
    elif isinstance(criteria, Or):
        for part in criteria.or_:
            yield from leaves(part)
    elif isinstance(criteria, Not):
        yield from leaves(criteria.not_)
    else:
        yield criteria


def to_document(criteria: Any) -> Any:
    """Back to plain JSON (the stored form)."""
    if isinstance(criteria, And):
        return {"and": [to_document(c) for c in criteria.and_]}
    if isinstance(criteria, Or):
        return {"or": [to_document(c) for c in criteria.or_]}
    if isinstance(criteria, Not):
        return {"not": to_document(criteria.not_)}
    return criteria.model_dump(exclude_none=True, exclude_defaults=True, by_alias=True) | _required(criteria)


def _required(criteria: Any) -> dict[str, Any]:
    if isinstance(criteria, TraitCondition | ComputedCondition):
        return {"op": criteria.op}
    return {}
