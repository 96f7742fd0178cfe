"""Computed traits as data, and the built-in set (orders, value, RFM, engagement).

A definition aggregates one property (or counts) over the profile's events that pass a filter,
optionally only within the last N days. Custom definitions are stored in the database
(`opencdp traits define`); built-ins are below. RFM and engagement are derived from other traits
by the rules documented in docs/segments.md; the session traits from the profile's sessions
(docs/personalisation.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from opencdp.segments.language import KEY_PATTERN, PropertyCondition

Kind = Literal["count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "distinct"]


class EventFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    event: str | None = Field(None, description="Event name (track event, page/screen name)")
    types: list[Literal["track", "page", "screen", "identify", "group", "alias"]] | None = None
    where: list[PropertyCondition] = Field(default_factory=list)


class ComputedTrait(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=KEY_PATTERN)
    kind: Kind
    property: str | None = Field(
        None,
        pattern=KEY_PATTERN,
        description="Aggregated property; first/last without it give the event time",
    )
    filter: EventFilter = Field(default_factory=EventFilter)
    window_days: int | None = Field(None, ge=1, le=36_500, description="Only events of the last N days")
    description: str = ""

    @model_validator(mode="after")
    def _property_needed(self) -> ComputedTrait:
        if self.kind in ("sum", "avg", "min", "max", "most_frequent", "distinct") and not self.property:
            raise ValueError(f"a {self.kind} trait needs a 'property'")
        return self


ORDER = EventFilter(event="Order Completed")


def _d(
    name: str,
    kind: Kind,
    description: str,
    prop: str | None = None,
    flt: EventFilter = ORDER,
    days: int | None = None,
) -> ComputedTrait:
    return ComputedTrait(
        name=name, kind=kind, property=prop, filter=flt, window_days=days, description=description
    )


BUILT_IN: tuple[ComputedTrait, ...] = (
    _d("order_count", "count", "Orders, all time"),
    _d("orders_last_365_days", "count", "Orders in the last year", days=365),
    _d("total_revenue", "sum", "Value per customer: revenue of all orders", "revenue"),
    _d("average_order_value", "avg", "Average revenue per order", "revenue"),
    _d("largest_order", "max", "Largest order revenue", "revenue"),
    _d("first_order_at", "first", "Time of the first order"),
    _d("last_order_at", "last", "Time of the latest order"),
    _d("favourite_category", "most_frequent", "Most ordered category", "category"),
    _d("categories_ordered", "distinct", "Every category ordered", "category"),
    _d(
        "web_activity_30_days",
        "count",
        "Page views, screens and site events in 30 days",
        flt=EventFilter(types=["page", "screen"]),
        days=30,
    ),
    _d(
        "email_opens_30_days",
        "count",
        "E-mails opened in 30 days",
        flt=EventFilter(event="Email Opened"),
        days=30,
    ),
    _d(
        "email_clicks_30_days",
        "count",
        "E-mail links clicked in 30 days",
        flt=EventFilter(event="Email Link Clicked"),
        days=30,
    ),
    _d(
        "sms_replies_30_days",
        "count",
        "SMS replies in 30 days",
        flt=EventFilter(event="SMS Replied"),
        days=30,
    ),
    _d(
        "calls_30_days",
        "count",
        "Call-centre contacts in 30 days",
        flt=EventFilter(event="Call Completed"),
        days=30,
    ),
)

#: Derived from the traits above (see `traits.compute.derive`), and from the profile's sessions.
DERIVED = {
    "rfm_recency_days": "Days since the latest order",
    "rfm_r": "Recency score 1-5 (5: ordered in the last 30 days)",
    "rfm_f": "Frequency score 1-5 (orders in the last year: 1, 2, 3-4, 5-9, 10+)",
    "rfm_m": "Monetary score 1-5 (revenue in all: <75, <200, <500, <1000, 1000+)",
    "rfm_score": "R, F and M as one code, e.g. '545'",
    "rfm_segment": "Named RFM segment: Champions, Loyal, Potential loyalist, New, Needs attention, At risk, "
    "Hibernating",
    "engagement_score": "0-100 from recent activity across web, e-mail, SMS and call centre",
    # From the profile's sessions (see `personalise.profile_sessions.session_traits`).
    "sessions_30_days": "Sessions (visits split by inactivity) started in the last 30 days",
    "avg_session_seconds_30_days": "Average length in seconds of the sessions started in the last 30 days",
    "last_session_started_at": "When the latest session started",
}
