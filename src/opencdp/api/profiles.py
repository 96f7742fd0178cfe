"""Profile API under /api/profiles: the single customer view. Read keys; every read is audited
by profile id (a lookup records the profile found, never the identifier searched for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from opencdp.api.audit import audit, safe_token
from opencdp.api.auth import ReadKey
from opencdp.api.errors import ApiError
from opencdp.personalise.profile_sessions import session_json, sessions_of
from opencdp.profiles.reader import (
    ProfileNotFound,
    TimelineOrder,
    find_profile_id,
    get_profile,
    merge_history,
    resolve_profile_id,
    timeline,
)
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api/profiles", tags=["profiles"])


class IdentifierOut(BaseModel):
    type: str = Field(..., description="user_id, anonymous_id, email, phone, device_id or a custom type")
    value: str


class TraitOut(BaseModel):
    value: Any
    timestamp: str = Field(..., description="Event time of the write that set it (latest wins)")
    message_id: str
    source: str


class ComputedOut(BaseModel):
    value: Any
    computed_at: datetime | None = Field(
        ..., description="When it was computed: time windows such as 'last 30 days' end then"
    )


class PredictedOut(BaseModel):
    value: Any
    model: str | None = Field(
        ..., description="The prediction model that wrote it (GET /api/predictions/{model})"
    )
    version: int | None = Field(..., description="The model's version (each fit adds one)")
    predicted_at: str | None = Field(..., description="The time the profile was measured at")


class RejectionOut(BaseModel):
    id: int
    left: IdentifierOut
    right: IdentifierOut
    reason: str | None
    created_by: str | None
    created_at: datetime
    applied_at: datetime | None = Field(..., description="null: the processor has not applied it yet")


class ProfileOut(BaseModel):
    id: str
    requested_id: str = Field(..., description="The id asked for; differs from `id` when it was merged")
    merged_ids: list[str]
    identifiers: list[IdentifierOut]
    traits: dict[str, TraitOut]
    computed: dict[str, ComputedOut] = Field(
        ...,
        description="Computed traits (built-in such as order_count, total_revenue, rfm_segment, "
        "and custom ones) by name",
    )
    predicted: dict[str, PredictedOut] = Field(
        ...,
        description="Predicted traits (lifetime value, propensities, channel preference, advocacy, "
        "interests) by name, with the model and version that wrote them",
    )
    first_seen: datetime | None
    last_seen: datetime | None
    event_counts: dict[str, int]
    updated_at: datetime
    rejections: list[RejectionOut] = Field(
        ..., description="Undone merges naming one of its identifiers (POST /api/profiles/{id}/unmerge)"
    )


class TimelineEvent(BaseModel):
    id: int
    type: str
    event: str | None
    timestamp: datetime
    received_at: datetime
    message_id: str
    source: str
    payload: dict[str, Any]


class TimelinePage(BaseModel):
    profile_id: str
    events: list[TimelineEvent]
    next_before_id: int | None = Field(None, description="Pass as before_id for the next (older) page")


class ConflictOut(BaseModel):
    event_id: int
    rule: str = Field(
        ...,
        description="The limit that refused the join (limit:TYPE<=N), or `rejected` (an operator's unmerge)",
    )
    timestamp: str
    left: IdentifierOut
    right: IdentifierOut
    explanation: str


class LinkOut(ConflictOut):
    id: int = Field(
        ..., description="The link's id: POST /api/profiles/{id}/unmerge with it undoes the merge"
    )
    rule: str = Field(..., description="same_event, alias or probabilistic (the matching job)")
    explanation: str = Field(
        ..., description="Why; for a probabilistic link the matching job's sentence with its reasons"
    )
    match_probability: float | None = Field(
        None, description="For a probabilistic link: the match probability"
    )


class MergeHistory(BaseModel):
    id: str
    merged_ids: list[str]
    links: list[LinkOut]
    conflicts: list[ConflictOut]
    rejections: list[RejectionOut]


class SessionEventOut(BaseModel):
    ts: datetime
    type: str
    name: str | None = Field(..., description="The track event's name or the page's name")
    path: str | None = Field(..., description="For a page or screen: its path")


class SessionOut(BaseModel):
    number: int = Field(..., description="1 for the oldest session of the period")
    started_at: datetime
    ended_at: datetime
    duration_seconds: float = Field(..., description="From the first to the last event")
    events: int
    page_views: int
    source: str | None = Field(..., description="Entry: utm_source of the first event that has a campaign")
    medium: str | None
    campaign: str | None
    referrer: str | None
    landing_path: str | None = Field(..., description="Path of the session's first page")
    items: list[SessionEventOut] = Field(..., description="The session's events in time order")


class SessionList(BaseModel):
    profile_id: str
    gap_minutes: int = Field(..., description="Inactivity that ends a session (OPENCDP_SESSION_GAP_MINUTES)")
    sessions: list[SessionOut] = Field(..., description="Newest first")


def _cdp(request: Request) -> OpenCDP:
    return request.app.state.cdp


def _not_found(exc: ProfileNotFound) -> ApiError:
    return ApiError(404, "not_found", str(exc))


@router.get("/lookup", response_model=ProfileOut, summary="Find a profile by any identifier")
def lookup(
    request: Request,
    key: ReadKey,
    type: Annotated[str, Query(min_length=1, description="Identifier type, e.g. email")],
    value: Annotated[str, Query(min_length=1)],
) -> dict[str, Any]:
    cdp = _cdp(request)
    detail: dict[str, Any] = {"by": safe_token(type)}
    try:
        out = get_profile(cdp.engine, find_profile_id(cdp.engine, cdp.processor.rules, type, value))
    except ProfileNotFound as exc:
        audit(request, key, "profile.lookup", detail={**detail, "found": False})
        raise _not_found(exc) from None
    audit(request, key, "profile.lookup", "profile", out["id"], {**detail, "found": True})
    return out


@router.get(
    "/{profile_id}", response_model=ProfileOut, summary="One profile (merged ids resolve to the survivor)"
)
def profile(request: Request, key: ReadKey, profile_id: str) -> dict[str, Any]:
    try:
        out = get_profile(_cdp(request).engine, profile_id)
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    audit(request, key, "profile.get", "profile", out["id"])
    return out


@router.get("/{profile_id}/events", response_model=TimelinePage, summary="The profile's events, newest first")
def events(
    request: Request,
    key: ReadKey,
    profile_id: str,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Cursor from next_before_id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    order: Annotated[
        TimelineOrder,
        Query(description="`arrival`: log order (the default); `time`: by when it happened"),
    ] = "arrival",
) -> dict[str, Any]:
    try:
        survivor, rows = timeline(_cdp(request).engine, profile_id, before_id, limit, order)
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    audit(request, key, "profile.events", "profile", survivor, {"count": len(rows)})
    return {
        "profile_id": survivor,
        "events": rows,
        "next_before_id": rows[-1]["id"] if len(rows) == limit else None,  # the same order goes on
    }


@router.get(
    "/{profile_id}/merges", response_model=MergeHistory, summary="Why these identifiers are one person"
)
def merges(request: Request, key: ReadKey, profile_id: str) -> dict[str, Any]:
    try:
        out = merge_history(_cdp(request).engine, profile_id)
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    audit(request, key, "profile.merges", "profile", out["id"])
    return out


@router.get(
    "/{profile_id}/sessions",
    response_model=SessionList,
    summary="The profile's sessions (visits split by inactivity), newest first",
)
def sessions(
    request: Request,
    key: ReadKey,
    profile_id: str,
    days: Annotated[int, Query(ge=1, le=3650, description="Sessions of the last N days")] = 90,
) -> dict[str, Any]:
    cdp = _cdp(request)
    gap = cdp.settings.session_gap_minutes
    try:
        with cdp.engine.connect() as conn:
            survivor = resolve_profile_id(conn, profile_id)
            found = sessions_of(
                conn, survivor, since=datetime.now(UTC) - timedelta(days=days), gap=timedelta(minutes=gap)
            )
    except ProfileNotFound as exc:
        raise _not_found(exc) from None
    audit(request, key, "profile.sessions", "profile", survivor, {"count": len(found)})
    return {
        "profile_id": survivor,
        "gap_minutes": gap,
        "sessions": [session_json(s) for s in reversed(found)],
    }
