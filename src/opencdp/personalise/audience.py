"""Who an experience's variant is for: the segment criteria language, extended with the live
session and the request's context.

    {"and": [
        {"segment": "big spenders"},                                   # history (memberships)
        {"trait": "country", "op": "eq", "value": "DE"},               # history (profile)
        {"session_event": "Product Viewed", "where": [{"property": "category", "op": "eq",
         "value": "shoes"}], "count": {"op": "gte", "value": 3}},      # this session's events
        {"session": "source", "op": "eq", "value": "newsletter"},      # this session's facts
        {"session": "struggling", "op": "eq", "value": true},
        {"context": "cart.value", "op": "gt", "value": 100},           # the live page
        {"context": "holiday", "op": "eq", "value": true}              # external context
    ]}

Session and context conditions only exist here: a saved segment is evaluated in SQL over stored
profiles, where there is no live session or page (session facts over time are computed traits).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from opencdp.segments.language import (
    CountTest,
    PropertyCondition,
    _Strict,
    _ValueTest,
    parse_criteria,
)

#: Facts of the visitor's current session (personalise/sessions.py, personalise/forms.py).
SessionField = Literal[
    "events",  # events so far in this session
    "page_views",
    "duration_seconds",
    "is_first",  # bool: the visitor was first seen in this session
    "source",  # utm_source of the session's entry (or null)
    "medium",
    "campaign",
    "referrer",
    "landing_path",
    "struggling",  # bool: personalise.forms.struggling
    "struggling_form",  # the form_id struggled with
    "struggling_field",
]

#: Keys of the live context (personalise/context.py says where each comes from).
ContextKey = Literal[
    "page.url",
    "page.path",
    "page.referrer",
    "page.title",
    "page.search",
    "utm.source",
    "utm.medium",
    "utm.campaign",
    "utm.term",
    "utm.content",
    "device.type",  # mobile, tablet or desktop
    "locale",
    "language",
    "country",
    "region",
    "timezone",
    "local_hour",  # 0-23 in the visitor's time zone
    "weekday",  # 1 (Monday) to 7
    "local_date",  # YYYY-MM-DD in the visitor's time zone
    "cart.value",
    "cart.items",  # number of items (sum of quantities)
    "cart.currency",
    "holiday",  # bool: a public holiday today in the visitor's country (the `holidays` package)
    "holiday_name",
    "weather.condition",  # imported weather for the visitor's region and day
    "weather.temperature_c",
    "known_visitor",  # bool: the identifiers belong to a profile
]


class SessionCondition(_ValueTest):
    """A fact of the current session."""

    session: SessionField


class SessionEventCondition(_Strict):
    """Events of the current session, like an event condition over history."""

    session_event: str | None = Field(None, min_length=1, max_length=500)
    type: Literal["track", "page", "screen", "identify", "group", "alias"] | None = None
    where: list[PropertyCondition] = Field(default_factory=list, max_length=20)
    count: CountTest | None = None

    @property
    def count_test(self) -> CountTest:
        return self.count or CountTest()


class ContextCondition(_ValueTest):
    """A value of the live context the page sends (or that is looked up for it)."""

    context: ContextKey


AUDIENCE_SHAPES: dict[str, type[BaseModel]] = {
    "session": SessionCondition,
    "session_event": SessionEventCondition,
    "context": ContextCondition,
}


def parse_audience(document: Any, path: str = "") -> Any:
    """Validate an audience; a `CriteriaError` names the exact path of each problem."""
    return parse_criteria(document, path, AUDIENCE_SHAPES)
