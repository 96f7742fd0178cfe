"""The admin API under /api: sources (admin key) and the event log (read key, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from opencdp.access.keys import list_sources
from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey
from opencdp.health import check
from opencdp.log.reader import EventQuery, read_events
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["admin"])


class SourceOut(BaseModel):
    id: int
    name: str
    enabled: bool
    created_at: datetime


class EventOut(BaseModel):
    id: int
    source: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    received_at: datetime
    sent_at: datetime | None
    original_timestamp: datetime | None
    timestamp: datetime
    payload: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next_after_id: int | None


class Processing(BaseModel):
    events_waiting: int = Field(
        0, description="Events in the log not processed yet (counted up to 1,000,000)"
    )
    lag_seconds: float = Field(0.0, description="How long the oldest of them has waited")
    checkpoint: int = Field(0, description="Id of the last event processed")
    profiles_waiting: int = Field(
        0,
        description="Profiles whose computed traits and memberships wait for a worker's refresh "
        "(PostgreSQL, where workers refresh them in parallel)",
    )
    events_per_second: float | None = Field(
        None,
        description="Processing rate from the checkpoint's movement between this server's health "
        "checks and metric scrapes of about the last minute (null until two are a second apart)",
    )


class FailedDefinition(BaseModel):
    kind: Literal["segment", "trait"]
    name: str
    failed_at: datetime


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    reasons: list[str] = Field(default_factory=list, description="Why the status is degraded")
    processing: Processing
    failed_definitions: list[FailedDefinition] = Field(
        default_factory=list,
        description="Segments and computed traits that failed to evaluate (errors: in their own "
        "listings, which need a key)",
    )


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness, and whether collection and processing work (200 either way; see status)",
)
def health(request: Request) -> dict[str, Any]:
    """Always 200 while the server answers: `status` says whether everything works."""
    cdp: OpenCDP = request.app.state.cdp
    return check(cdp).as_dict()


@router.get("/sources", response_model=list[SourceOut], summary="List sources")
def get_sources(request: Request, _key: AdminKey) -> list[Any]:
    return list_sources(request.app.state.cdp.engine)


@router.get("/events", response_model=EventPage, summary="Read the event log in order")
def get_events(
    request: Request,
    key: ReadKey,
    source: Annotated[str | None, Query(description="Source name")] = None,
    type: Annotated[str | None, Query(description="Call type: identify, track, …")] = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    message_id: str | None = None,
    after_id: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Return events with a larger id (the cursor)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = read_events(
        request.app.state.cdp.engine,
        EventQuery(source, type, user_id, anonymous_id, message_id, after_id, limit),
    )
    given = (("source", source), ("type", type), ("user_id", user_id), ("anonymous_id", anonymous_id))
    filters = [name for name, value in (*given, ("message_id", message_id)) if value is not None]
    audit(request, key, "events.read", detail={"filters": filters, "count": len(rows)})  # names only
    return {"events": rows, "next_after_id": rows[-1]["id"] if len(rows) == limit else None}
