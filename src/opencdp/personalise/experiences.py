"""An experience as data: what one placement on the brand's site shows to whom.

    {"name": "winter boots hero", "placement": "home-hero", "priority": 10,
     "audience": {"context": "country", "op": "in", "value": ["DE", "AT"]},
     "strategy": "first_match",
     "variants": [
        {"name": "boots", "audience": {"session_event": "Product Viewed", "where": [...],
                                       "count": {"op": "gte", "value": 3}},
         "content": {"html": "<h2>Boots for the snow</h2>"}},
        {"name": "everyone else", "content": {"html": "<h2>Winter sale</h2>"}}],
     "holdout_percent": 10,
     "default": {},
     "fallback": {"html": "<h2>Welcome</h2>"},
     "goal": "Order Completed"}

- `audience` (optional): who the experience is for at all (personalise/audience.py).
- `strategy`: `first_match` (the first variant whose audience matches, in the order listed),
  `weighted` (among matching variants, by `weight`, stable per visitor: an A/B/n test) or
  `highest_score` (the matching variant whose `score` — a computed, predicted or trait value of the
  profile, e.g. `predicted:intent_shoes` — is highest).
- `holdout_percent`: a stable, random share of profiles that gets `default` instead of the variant
  chosen for them; the decision is logged with `holdout: true` and the variant they would have
  seen, so uplift compares like with like.
- `default`: content when no variant matches (and for the holdout); `{}` leaves the page as it is.
- `fallback`: content for unknown visitors (identifiers that belong to no profile yet); without it
  they are decided like anyone, with only their session and context to go on.
- `goal`: the event that counts as a conversion in the uplift report (can be changed there).
- Among experiences on the same placement, the highest `priority` whose audience matches decides.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opencdp.personalise.audience import parse_audience
from opencdp.segments.language import CriteriaError

#: The event each decision is logged as (source `opencdp-decide`), with properties
#: experience, experience_id, version, placement, variant, holdout, reason.
EXPERIENCE_VIEWED = "Experience Viewed"
#: The built-in source of those events.
DECIDE_SOURCE = "opencdp-decide"

PLACEMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
NAME_PATTERN = r'^[^"\\\x00-\x1f]{1,200}$'
#: Content is returned to browsers as is: keep it small.
MAX_CONTENT_BYTES = 16 * 1024
#: Why a decision came out as it did (`reason` in responses and logged events).
Reason = Literal["matched", "holdout", "no_match", "unknown_visitor", "no_experience"]
SCORE_KINDS = ("computed", "predicted", "trait")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _content(value: dict[str, Any]) -> dict[str, Any]:
    if len(orjson.dumps(value)) > MAX_CONTENT_BYTES:
        raise ValueError(f"content is larger than {MAX_CONTENT_BYTES // 1024} KB")
    return value


class Variant(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=100)
    audience: dict[str, Any] | None = None
    weight: float = Field(1.0, ge=0, le=1_000_000)
    #: `highest_score`: "computed:<name>", "predicted:<name>" or "trait:<name>" (a number)
    score: str | None = Field(None, max_length=300)
    content: dict[str, Any] = Field(default_factory=dict)

    _check_content = field_validator("content")(_content)

    @field_validator("score")
    @classmethod
    def _score_names_a_value(cls, value: str | None) -> str | None:
        if value is not None:
            kind, _, name = value.partition(":")
            if kind not in SCORE_KINDS or not name:
                raise ValueError("give the score as computed:<name>, predicted:<name> or trait:<name>")
        return value


class Experience(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=200)
    placement: str = Field(pattern=PLACEMENT_PATTERN)
    description: str = Field("", max_length=2000)
    priority: int = Field(0, ge=-1000, le=1000)
    audience: dict[str, Any] | None = None
    strategy: Literal["first_match", "weighted", "highest_score"] = "first_match"
    variants: list[Variant] = Field(min_length=1, max_length=20)
    holdout_percent: float = Field(10.0, ge=0, le=50)
    default: dict[str, Any] = Field(default_factory=dict)
    fallback: dict[str, Any] | None = None
    goal: str = Field("Order Completed", min_length=1, max_length=500)

    _check_default = field_validator("default")(_content)

    @field_validator("fallback")
    @classmethod
    def _check_fallback(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _content(value)

    @model_validator(mode="after")
    def _consistent(self) -> Experience:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique within an experience")
        if self.strategy == "highest_score" and any(v.score is None for v in self.variants):
            raise ValueError("strategy 'highest_score' needs a 'score' on every variant")
        if self.strategy == "weighted" and not any(v.weight > 0 for v in self.variants):
            raise ValueError("strategy 'weighted' needs at least one variant with a weight above 0")
        return self


class ExperienceError(ValueError):
    """An invalid experience; `problems` lists {"path", "problem"} with exact paths."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path'] or '(root)'}: {p['problem']}" for p in problems))
        self.problems = problems


def parse_experience(document: Any) -> Experience:
    """Validate a definition; errors name the exact path (`variants.1.audience.and.0.value`)."""
    if not isinstance(document, dict):
        raise ExperienceError([{"path": "", "problem": "must be a JSON object"}])
    problems: list[dict[str, str]] = []
    for path, audience in _audiences(document):
        try:
            parse_audience(audience, path)
        except CriteriaError as exc:
            problems += exc.problems
    if problems:
        raise ExperienceError(problems)
    try:
        return Experience.model_validate(document)
    except ValidationError as exc:
        raise ExperienceError(
            [
                {
                    "path": ".".join(str(p) for p in err["loc"]),
                    "problem": err["msg"].removeprefix("Value error, "),
                }
                for err in exc.errors()
            ]
        ) from None


def _audiences(document: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    if document.get("audience") is not None:
        found.append(("audience", document["audience"]))
    variants = document.get("variants")
    if isinstance(variants, list):
        for i, variant in enumerate(variants):
            if isinstance(variant, dict) and variant.get("audience") is not None:
                found.append((f"variants.{i}.audience", variant["audience"]))
    return found


def slug(text: str) -> str:
    """A placement-like name from free text (for the dashboard's defaults)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:100] or "placement"
