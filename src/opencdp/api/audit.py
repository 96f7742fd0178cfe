"""The audit log over the API: `GET /api/audit` (paginated) and `/api/audit/export` (CSV), admin only.

`audit()` is what the other routers call after a read of personal data or a change: the actor is
the API key (`key:<id>`). Entries name profiles, segments and keys by id or name, never by an
identifier or a trait value, so the log itself holds no personal data.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from opencdp.access import audit as audit_log
from opencdp.access.keys import ApiKey
from opencdp.api.auth import AdminKey
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api/audit", tags=["audit"])

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a name: no "@", "+", digits first or spaces


def audit(
    request: Request,
    key: ApiKey,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record that `key` did `action`. Call it only with ids, names of things and counts."""
    cdp: OpenCDP = request.app.state.cdp
    audit_log.record(cdp.engine, key.actor, action, target_type, target_id, detail)


def safe_token(value: str) -> str:
    """`value` if it looks like a name (an identifier type, a trait), else "other": a client could
    put an e-mail address or a phone number where a name belongs; that must not reach the log."""
    return value if _TOKEN.fullmatch(value) else "other"


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(..., description='"key:<id>" for API keys, "cli", "user:<id>" or "system"')
    action: str = Field(..., description="e.g. profile.lookup, segment.export, key.create")
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any] = Field(..., description="Counts and names of things; never personal data")


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after_id: int | None = Field(None, description="Pass as after_id for the next page")


ActionFilter = Annotated[
    str | None,
    Query(max_length=100, description='Only this action, or a prefix ending in "*" such as segment.*'),
]
ActorFilter = Annotated[str | None, Query(max_length=100, description="Only this actor, e.g. key:3")]


@router.get("", response_model=AuditPage, summary="Who read, exported or changed what (oldest first)")
def list_entries(
    request: Request,
    _key: AdminKey,
    action: ActionFilter = None,
    actor: ActorFilter = None,
    after_id: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Return entries with a larger id (the cursor)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    rows = audit_log.entries(cdp.engine, after_id, limit, action, actor)
    return {"entries": rows, "next_after_id": rows[-1]["id"] if len(rows) == limit else None}


@router.get(
    "/export",
    summary="The whole (filtered) audit log as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export(request: Request, key: AdminKey, action: ActionFilter = None, actor: ActorFilter = None) -> Any:
    cdp: OpenCDP = request.app.state.cdp
    filters = [name for name, value in (("action", action), ("actor", actor)) if value]
    audit(request, key, "audit.export", detail={"filters": filters})
    return StreamingResponse(
        audit_log.export_csv(cdp.engine, action, actor),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
