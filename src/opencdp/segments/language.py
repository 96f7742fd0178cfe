"""The segment criteria language: JSON documents validated into these models.

    {"and": [
        {"trait": "country", "op": "eq", "value": "DE"},
        {"event": "Order Completed", "where": [{"property": "category", "op": "eq", "value": "shoes"}],
         "within_days": 30, "count": {"op": "gte", "value": 2}},
        {"not": {"event": "Email Opened", "within_days": 7}},
        {"segment": "newsletter subscribers"}
    ]}

Validation errors carry the exact path in the document (e.g. `and.1.count.value`).
Semantics are strict about types: "42" (text) is not 42 (a number); see docs/segments.md.
Size is limited (`MAX_CONDITIONS`, `MAX_DEPTH`): here for the document itself, in the compiler
again with referenced segments expanded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Scalar = str | int | float | bool
KEY_PATTERN = r'^[^"\\\x00-\x1f]{1,200}$'

#: At most this many conditions (trait, computed and event conditions, counting those of
#: referenced segments as often as they are referenced) in one segment. See docs/segments.md#limits.
MAX_CONDITIONS = 200
#: At most this many levels of and/or/not, counting the levels inside referenced segments.
MAX_DEPTH = 10

ValueOp = Literal[
    "eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with", "exists", "not_exists"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ValueTest(_Strict):
    op: ValueOp = "eq"
    value: Scalar | list[str | int | float] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> _ValueTest:
        op, value = self.op, self.value
        if op in ("exists", "not_exists"):
            if value is not None:
                raise ValueError(f"'{op}' takes no value")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"'{op}' needs a non-empty list of strings or numbers")
            if len({isinstance(v, str) for v in value}) > 1:
                raise ValueError(f"'{op}' needs a list of only strings or only numbers")
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"'{op}' compares numbers; give a number as value")
        elif op in ("contains", "starts_with"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"'{op}' needs a non-empty string")
        elif value is None or isinstance(value, list):
            raise ValueError(f"'{op}' needs a single string, number or boolean")
        return self


class TraitCondition(_ValueTest):
    """A profile trait (latest value from identify/context traits)."""

    trait: str = Field(pattern=KEY_PATTERN)


class ComputedCondition(_ValueTest):
    """A computed trait (see `opencdp traits list`)."""

    computed: str = Field(pattern=KEY_PATTERN)


class PropertyCondition(_ValueTest):
    property: str = Field(pattern=KEY_PATTERN)


class CountTest(_Strict):
    op: Literal["gte", "gt", "eq", "lte", "lt"] = "gte"
    value: int = Field(1, ge=0, le=1_000_000)


class TimeTest(_Strict):
    """`within_days`: it happened in the last N days; `before_days`: more than N days ago."""

    op: Literal["within_days", "before_days"]
    value: int = Field(ge=0, le=36_500)


class EventCondition(_Strict):
    """Behaviour: did the profile perform an event (how often, when)."""

    event: str | None = Field(None, min_length=1, max_length=500)
    type: Literal["track", "page", "screen", "identify", "group", "alias"] | None = None
    where: list[PropertyCondition] = Field(default_factory=list, max_length=20)
    within_days: int | None = Field(None, ge=1, le=36_500)
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
        return self

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
    And | Or | Not | TraitCondition | ComputedCondition | EventCondition | SegmentRef,
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


def parse_criteria(document: Any, path: str = "") -> Any:
    """Validate a criteria document, choosing the model by its key so errors point at one shape."""
    return _parse(document, path, 0, _Budget())


def _parse(document: Any, path: str, depth: int, budget: _Budget) -> Any:
    if not isinstance(document, dict):
        raise CriteriaError([{"path": path, "problem": "must be a JSON object"}])
    kinds = [k for k in _SHAPES if k in document]
    if not kinds:
        raise CriteriaError(
            [{"path": path, "problem": "needs one of: and, or, not, trait, computed, event, segment"}]
        )
    model = _SHAPES[kinds[0]]
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
                children.append(_parse(item, _join(path, f"{key}.{i}"), depth + 1, budget))
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
        return Not.model_construct(not_=_parse(document["not"], _join(path, "not"), depth + 1, budget))
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise CriteriaError(
            [
                {
                    "path": _join(path, ".".join(str(p) for p in err["loc"])),
                    "problem": err["msg"].removeprefix("Value error, "),
                }
                for err in exc.errors()
            ]
        ) from None


def _join(path: str, more: str) -> str:
    return f"{path}.{more}" if path and more else path or more


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
