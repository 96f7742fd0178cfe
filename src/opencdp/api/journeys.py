"""Journeys over the admin API: save (a draft, then a new version per change), activate, pause,
delete, read with stats and versions, and a profile's journeys (the 360° view).

Reading needs the `read` scope, changing the `admin` scope (as for segments and destinations).
The audit log gets ids, names, versions and counts, never a definition (it may hold message
content) nor anything about a profile beyond its id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from opencdp.api.activation import Document, PathId
from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.journeys import store
from opencdp.journeys.store import JourneyError
from opencdp.profiles.reader import ProfileNotFound, resolve_profile_id
from opencdp.store.schema import journeys
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["journeys"])

Text = Annotated[str, AfterValidator(storable)]
DEFINITION = "A journey definition: entry, steps, and optionally goal, exit_on, reentry, caps, quiet_hours"


# --- Shapes ----------------------------------------------------------------------------------------


class JourneyIn(BaseModel):
    name: Text = Field(..., min_length=1, max_length=200)
    description: Text = Field("", max_length=10_000)
    definition: Document = Field(..., description=DEFINITION)


class JourneyChange(BaseModel):
    """A new version; the name stays (it is not part of the body)."""

    model_config = ConfigDict(extra="forbid")

    description: Annotated[str | None, AfterValidator(storable)] = Field(
        None, max_length=10_000, description="Left out (or null) keeps the current description"
    )
    definition: Document = Field(..., description=DEFINITION)


class JourneyStats(BaseModel):
    entered: int
    active: int
    completed: int
    exited: int
    converted: int
    conversion_rate: float | None = Field(..., description="converted / entered; null before anyone entered")
    steps: dict[str, dict[str, int]] = Field(
        ..., description="Per step: now_here (profiles there now) and what happened there (sent, capped, …)"
    )


class JourneyOut(BaseModel):
    id: int
    name: str
    description: str
    status: Literal["draft", "active", "paused"]
    version: int
    definition: dict[str, Any]
    next_run_at: str | None = Field(..., description="A scheduled entry's next occurrence")
    created_at: str
    updated_at: str
    stats: JourneyStats


class VersionOut(BaseModel):
    version: int
    definition: dict[str, Any]
    created_at: str
    by: str = Field(..., description='Who saved it: "key:<id>", "cli", …')


class HistoryOut(BaseModel):
    step: str | None
    action: str
    channel: str | None
    at: str
    detail: Any


class ProfileJourneyOut(BaseModel):
    journey: str | None
    journey_id: int
    version: int
    status: Literal["active", "done"]
    outcome: str | None = Field(..., description="completed, exited or converted; null while active")
    step: str | None = Field(..., description="Where it is now, while active (in a wait: the wait)")
    next_step: str | None = Field(None, description="The step it goes on with at next_at")
    next_at: str | None
    waiting_for: str | None = Field(..., description="The event a wait_for step awaits")
    entered_at: str
    finished_at: str | None
    history: list[HistoryOut]


class ProfileJourneys(BaseModel):
    profile_id: str = Field(..., description="The surviving profile (a merged id resolves to it)")
    journeys: list[ProfileJourneyOut] = Field(..., description="Newest first")


# --- Helpers -----------------------------------------------------------------------------------------


def _engine(request: Request) -> sa.Engine:
    cdp: OpenCDP = request.app.state.cdp
    return cdp.engine


def _error(exc: JourneyError) -> ApiError:
    code = {404: "not_found", 409: "conflict"}.get(exc.status, "invalid_request")
    return ApiError(exc.status, code, str(exc), [{"field": exc.field, "problem": exc.message}])


def _brief(out: dict[str, Any]) -> dict[str, Any]:
    return {"name": out["name"], "version": out["version"], "status": out["status"]}


# --- Journeys ----------------------------------------------------------------------------------------


@router.get("/journeys", response_model=list[JourneyOut], summary="Journeys with their stats, by name")
def list_journeys(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    with _engine(request).connect() as conn:
        return store.list_all(conn)


@router.post("/journeys", response_model=JourneyOut, status_code=201, summary="Create a journey (as a draft)")
def create_journey(request: Request, key: AdminKey, body: JourneyIn) -> dict[str, Any]:
    name = body.name.strip()
    try:
        with _engine(request).begin() as conn:
            if conn.execute(sa.select(journeys.c.id).where(journeys.c.name == name)).first():
                raise JourneyError(
                    "name", f"a journey named {name!r} exists; PUT /api/journeys/{{id}} changes it", 409
                )
            out = store.save(conn, name, body.definition, body.description, actor=key.actor)
    except JourneyError as exc:
        raise _error(exc) from None
    except sa.exc.IntegrityError:  # created at the same moment by another request
        raise _error(JourneyError("name", f"a journey named {name!r} exists", 409)) from None
    audit(request, key, "journey.create", "journey", str(out["id"]), _brief(out))
    return out


@router.get("/journeys/{journey_id}", response_model=JourneyOut, summary="One journey with its stats")
def get_journey(request: Request, _key: ReadKey, journey_id: PathId) -> dict[str, Any]:
    try:
        with _engine(request).connect() as conn:
            return store.get(conn, journey_id)
    except JourneyError as exc:
        raise _error(exc) from None


@router.put(
    "/journeys/{journey_id}",
    response_model=JourneyOut,
    summary="Save a new version (profiles on their way go on from their step, if it still exists)",
)
def update_journey(
    request: Request, key: AdminKey, journey_id: PathId, body: JourneyChange
) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            current = store.get(conn, journey_id)
            description = current["description"] if body.description is None else body.description
            out = store.save(conn, current["name"], body.definition, description, actor=key.actor)
    except JourneyError as exc:
        raise _error(exc) from None
    audit(request, key, "journey.update", "journey", str(journey_id), _brief(out))
    return out


def _set_status(request: Request, key: AdminKey, journey_id: int, status: str, action: str) -> dict[str, Any]:
    try:
        with _engine(request).begin() as conn:
            out = store.set_status(conn, journey_id, status)
    except JourneyError as exc:
        raise _error(exc) from None
    audit(request, key, action, "journey", str(journey_id), _brief(out))
    return out


@router.post(
    "/journeys/{journey_id}/activate",
    response_model=JourneyOut,
    summary="Activate: profiles enter from events logged after now",
)
def activate_journey(request: Request, key: AdminKey, journey_id: PathId) -> dict[str, Any]:
    return _set_status(request, key, journey_id, "active", "journey.activate")


@router.post(
    "/journeys/{journey_id}/pause",
    response_model=JourneyOut,
    summary="Pause: no one enters or moves on (waits keep counting)",
)
def pause_journey(request: Request, key: AdminKey, journey_id: PathId) -> dict[str, Any]:
    return _set_status(request, key, journey_id, "paused", "journey.pause")


@router.delete(
    "/journeys/{journey_id}",
    status_code=204,
    summary="Delete a journey with its versions, instances and history (sent messages stay sent)",
)
def delete_journey(request: Request, key: AdminKey, journey_id: PathId) -> None:
    try:
        with _engine(request).begin() as conn:
            name = store.get(conn, journey_id)["name"]
            store.delete(conn, journey_id)
    except JourneyError as exc:
        raise _error(exc) from None
    audit(request, key, "journey.delete", "journey", str(journey_id), {"name": name})


@router.get(
    "/journeys/{journey_id}/versions", response_model=list[VersionOut], summary="Every version, newest first"
)
def journey_versions(request: Request, _key: ReadKey, journey_id: PathId) -> list[dict[str, Any]]:
    try:
        with _engine(request).connect() as conn:
            return store.versions(conn, journey_id)
    except JourneyError as exc:
        raise _error(exc) from None


# --- The 360° view -------------------------------------------------------------------------------------


@router.get(
    "/profiles/{profile_id}/journeys",
    response_model=ProfileJourneys,
    tags=["profiles"],
    summary="The profile's journeys: where it is in each and what happened on the way",
)
def profile_journeys(request: Request, key: ReadKey, profile_id: str) -> dict[str, Any]:
    try:
        with _engine(request).connect() as conn:
            survivor = resolve_profile_id(conn, profile_id)
            found = store.profile_journeys(conn, survivor)
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    audit(request, key, "profile.journeys", "profile", survivor, {"count": len(found)})
    return {"profile_id": survivor, "journeys": found}
