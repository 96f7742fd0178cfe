"""Consent and data subject requests over the admin API."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field

from opencdp.access.audit import record
from opencdp.api.auth import AdminKey, ExportKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.api.responses import FastJSONResponse
from opencdp.privacy.consent import ConsentError, define_purpose, list_purposes, require_purpose
from opencdp.privacy.consent_events import consent_event
from opencdp.privacy.erasure import erase_person
from opencdp.privacy.requests import export_person
from opencdp.profiles.reader import ProfileNotFound, resolve_profile_id
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["privacy"])


Text = Annotated[str, AfterValidator(storable)]


class PurposeIn(BaseModel):
    name: Text = Field(..., min_length=1, max_length=64)
    description: Text = ""


class PurposeOut(BaseModel):
    name: str
    description: str
    created_at: datetime


class ConsentIn(BaseModel):
    purpose: Text = Field(..., min_length=1, max_length=64)
    granted: bool
    version: Text | None = Field(None, max_length=100, description="Version of the consent text shown")


class ConsentAccepted(BaseModel):
    profile_id: str
    message_id: str
    purpose: str
    granted: bool


class Person(BaseModel):
    type: Text = Field(..., min_length=1, description="Identifier type, e.g. email or user_id")
    value: Text = Field(..., min_length=1)


class Erased(BaseModel):
    events_deleted: int
    events_scrubbed: int
    identifiers: int
    profiles: int
    profiles_scrubbed: int


def _cdp(request: Request) -> OpenCDP:
    cdp: OpenCDP = request.app.state.cdp
    return cdp


@router.get("/consent/purposes", response_model=list[PurposeOut], summary="Consent purposes")
def purposes(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    return list_purposes(_cdp(request).engine)


@router.post("/consent/purposes", response_model=PurposeOut, status_code=201, summary="Define a purpose")
def add_purpose(request: Request, key: AdminKey, body: PurposeIn) -> dict[str, Any]:
    cdp = _cdp(request)
    try:
        name = define_purpose(cdp.engine, body.name, body.description)
    except ConsentError as exc:
        raise ApiError(
            409 if "exists" in str(exc) else 400,
            "invalid_purpose",
            str(exc),
            [{"field": "name", "problem": str(exc)}],
        ) from None
    record(cdp.engine, f"key:{key.id}", "consent.purpose.create", "purpose", name)
    return next(p for p in list_purposes(cdp.engine) if p["name"] == name)


@router.post(
    "/profiles/{profile_id}/consent",
    response_model=ConsentAccepted,
    status_code=202,
    summary="Record consent given or withdrawn (as an event; applied within a second)",
)
async def set_consent(request: Request, key: AdminKey, profile_id: str, body: ConsentIn) -> dict[str, Any]:
    cdp = _cdp(request)
    try:
        with cdp.engine.connect() as conn:
            purpose = require_purpose(conn, body.purpose)
            survivor = resolve_profile_id(conn, profile_id)
    except ConsentError as exc:
        raise ApiError(
            400, "invalid_purpose", str(exc), [{"field": "purpose", "problem": str(exc)}]
        ) from None
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    row = consent_event(cdp.engine, survivor, purpose, body.granted, body.version, f"key:{key.id}")
    await asyncio.wrap_future(cdp.writer.submit([row]))
    record(
        cdp.engine,
        f"key:{key.id}",
        "consent.update",
        "profile",
        survivor,
        {"purpose": purpose, "granted": body.granted},
    )
    return {
        "profile_id": survivor,
        "message_id": row["message_id"],
        "purpose": purpose,
        "granted": body.granted,
    }


@router.post(
    "/privacy/export",
    summary="Everything held about a person, as a JSON file (access, portability)",
    responses={200: {"content": {"application/json": {}}}},
)
def export(request: Request, key: ExportKey, body: Person) -> Response:
    cdp = _cdp(request)
    try:
        data = export_person(cdp.engine, cdp.processor.rules, body.type, body.value)
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    record(cdp.engine, f"key:{key.id}", "privacy.export", "profile", data["profile"]["id"])
    content = FastJSONResponse(data).body
    return Response(
        content,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="personal-data.json"'},
    )


@router.post("/privacy/erase", response_model=Erased, summary="Erase a person everywhere and suppress them")
def erase(request: Request, key: AdminKey, body: Person) -> dict[str, int]:
    cdp = _cdp(request)
    try:
        counts = erase_person(cdp.engine, cdp.processor.rules, body.type, body.value, f"key:{key.id}")
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    cdp.suppressor.invalidate()
    return counts
