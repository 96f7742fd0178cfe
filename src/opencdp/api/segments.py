"""Segments and computed traits over the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, Field

from opencdp.api.audit import audit, safe_token
from opencdp.api.auth import AdminKey, ExportKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.privacy.consent import ConsentError
from opencdp.segments import queries, reach, store
from opencdp.segments.language import CriteriaError
from opencdp.store import failures
from opencdp.system import OpenCDP
from opencdp.traits import store as trait_store
from opencdp.traits.definitions import DERIVED, ComputedTrait

router = APIRouter(prefix="/api", tags=["segments"])


class CriteriaIn(BaseModel):
    criteria: Annotated[dict[str, Any], AfterValidator(storable)] = Field(
        ..., description="A criteria document, see docs/segments.md"
    )


class PreviewIn(CriteriaIn):
    sample_size: int = Field(10, ge=0, le=100)


class SegmentIn(CriteriaIn):
    name: Annotated[str, AfterValidator(storable)] = Field(..., min_length=1, max_length=200)
    description: Annotated[str, AfterValidator(storable)] = ""


class SegmentOut(BaseModel):
    name: str
    description: str
    criteria: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    members: int
    status: Literal["ok", "failed"] = Field(
        "ok", description="failed: the last evaluation raised `error`; skipped until fixed"
    )
    error: str | None = None
    failed_at: datetime | None = None


class ProfileBrief(BaseModel):
    id: str
    identifiers: list[dict[str, str]]
    traits: dict[str, Any]
    computed: dict[str, Any]
    last_seen: datetime | None


class PreviewOut(BaseModel):
    count: int
    sample: list[ProfileBrief]
    evaluated_at: datetime


class Member(BaseModel):
    profile_id: str
    entered_at: datetime
    identifiers: list[dict[str, str]] | None
    traits: dict[str, Any] | None
    computed: dict[str, Any] | None


class MemberPage(BaseModel):
    segment: str
    total: int
    members: list[Member]
    next_after: str | None


class ReachOut(BaseModel):
    segment: str
    purpose: str = Field(..., description="The consent purpose, as stored")
    channel: Literal["email", "sms", "any"] = Field(
        ..., description="What the export is for (given, or guessed from the purpose's name)"
    )
    identifier: str | None = Field(..., description="Identifier type the channel needs: email, phone or null")
    members: int = Field(..., description="Current members")
    with_identifier: int = Field(..., description="Members with that identifier (all when none is needed)")
    consented: int = Field(..., description="Members who consented to the purpose")
    rows: int = Field(..., description="Members with the identifier who consented: the rows of an export")
    summary: str = Field(..., description="The same in one line")
    empty_reason: str | None = Field(..., description="Why an export would be empty; null when it is not")


Channel = Annotated[
    Literal["email", "sms", "any"] | None,
    Query(
        description="What the export is for: email (rows need an e-mail address), sms (a phone "
        "number) or any; default: guessed from the purpose's name (email_marketing → email, sms → sms)"
    ),
]


def _reach(engine: Any, name: str, purpose: str, channel: str | None) -> reach.Reach:
    try:
        return reach.reach(engine, name, purpose, channel)
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    except ConsentError as exc:
        raise _purpose_error(exc) from None


def _reach_out(found: reach.Reach) -> dict[str, Any]:
    return {**found.as_dict(), "summary": reach.summary(found), "empty_reason": reach.empty_reason(found)}


class Validation(BaseModel):
    valid: bool


def _engine(request: Request) -> Any:
    cdp: OpenCDP = request.app.state.cdp
    return cdp.engine


def _bad_criteria(exc: CriteriaError) -> ApiError:
    errors = [
        {"field": "criteria" + (f".{p['path']}" if p["path"] else ""), "problem": p["problem"]}
        for p in exc.problems
    ]
    return ApiError(400, "invalid_criteria", f"{errors[0]['field']}: {errors[0]['problem']}", errors)


def _segment_error(exc: store.SegmentError) -> ApiError:
    text = str(exc)
    if text.startswith("no segment named"):
        return ApiError(404, "not_found", text)
    if "already exists" in text:
        return ApiError(409, "conflict", text)
    return ApiError(400, "invalid_segment", text, [{"field": "criteria", "problem": text}])


def _purpose_error(exc: ConsentError) -> ApiError:
    return ApiError(400, "invalid_purpose", str(exc), [{"field": "purpose", "problem": str(exc)}])


def _out(engine: Any, segment: store.Segment) -> dict[str, Any]:
    page = {"total": queries.member_count(engine, segment.name)}
    return {
        "name": segment.name,
        "description": segment.description,
        "criteria": segment.criteria,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
        "members": page["total"],
        "status": segment.status,
        "error": segment.error,
        "failed_at": segment.failed_at,
    }


@router.post(
    "/segments/validate", response_model=Validation, summary="Check criteria; 400 names each bad path"
)
def validate(request: Request, _key: ReadKey, body: CriteriaIn) -> dict[str, Any]:
    try:
        with _engine(request).connect() as conn:
            store.check(conn, body.criteria)
    except CriteriaError as exc:
        raise _bad_criteria(exc) from None
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    return {"valid": True}


@router.post("/segments/preview", response_model=PreviewOut, summary="Count and sample, without saving")
def preview(request: Request, key: ReadKey, body: PreviewIn) -> dict[str, Any]:
    try:
        out = queries.preview(_engine(request), body.criteria, body.sample_size)
    except CriteriaError as exc:
        raise _bad_criteria(exc) from None
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    # Criteria may hold values ("email = ann@…"): only counts go to the audit log.
    audit(request, key, "segment.preview", detail={"count": out["count"], "sample": len(out["sample"])})
    return out


@router.post("/segments", response_model=SegmentOut, status_code=201, summary="Save a segment")
def create(request: Request, key: AdminKey, body: SegmentIn) -> dict[str, Any]:
    out = _save(request, body, replace=False)
    audit(request, key, "segment.create", "segment", body.name)
    return out


@router.put("/segments/{name}", response_model=SegmentOut, summary="Replace a segment's criteria")
def replace(request: Request, key: AdminKey, name: str, body: SegmentIn) -> dict[str, Any]:
    if body.name != name:
        raise ApiError(
            400,
            "invalid_request",
            "name in the body differs from the path",
            [{"field": "name", "problem": "must equal the segment name in the path"}],
        )
    out = _save(request, body, replace=True)
    audit(request, key, "segment.update", "segment", name)
    return out


def _save(request: Request, body: SegmentIn, replace: bool) -> dict[str, Any]:
    engine = _engine(request)
    try:
        segment = store.save(engine, body.name, body.criteria, body.description, replace=replace)
    except CriteriaError as exc:
        raise _bad_criteria(exc) from None
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    return _out(engine, segment)


@router.get("/segments", response_model=list[SegmentOut], summary="List segments with member counts")
def list_segments(request: Request, _key: ReadKey) -> list[dict[str, Any]]:
    engine = _engine(request)
    return [_out(engine, s) for s in store.list_all(engine)]


@router.get("/segments/{name}", response_model=SegmentOut, summary="One segment")
def get_segment(request: Request, _key: ReadKey, name: str) -> dict[str, Any]:
    try:
        return _out(_engine(request), store.get(_engine(request), name))
    except store.SegmentError as exc:
        raise _segment_error(exc) from None


@router.delete("/segments/{name}", status_code=204, summary="Delete a segment and its memberships")
def delete_segment(request: Request, key: AdminKey, name: str) -> None:
    try:
        store.delete(_engine(request), name)
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    audit(request, key, "segment.delete", "segment", name)


@router.get("/segments/{name}/members", response_model=MemberPage, summary="Current members, paginated")
def list_members(
    request: Request,
    key: ExportKey,
    name: str,
    purpose: Annotated[
        str, Query(description="Consent purpose: only members who consented to it are listed")
    ],
    after: Annotated[str | None, Query(description="Cursor: next_after of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    try:
        page = queries.members(_engine(request), name, after, limit, purpose)
    except store.SegmentError as exc:
        raise _segment_error(exc) from None
    except ConsentError as exc:
        raise _purpose_error(exc) from None
    detail = {"purpose": safe_token(purpose), "count": len(page["members"])}
    audit(request, key, "segment.members", "segment", name, detail)
    return page


@router.get(
    "/segments/{name}/reach",
    response_model=ReachOut,
    summary="How many members an export for a purpose and channel would contain",
)
def segment_reach(
    request: Request,
    _key: ReadKey,
    name: str,
    purpose: Annotated[str, Query(description="Consent purpose the export would be for")],
    channel: Channel = None,
) -> dict[str, Any]:
    """Counts only, no personal data: members, those with the identifier the channel needs, those
    who consented to the purpose, and both (the rows). One query over the memberships."""
    return _reach_out(_reach(_engine(request), name, purpose, channel))


@router.get(
    "/segments/{name}/export",
    summary="Members as CSV with chosen traits",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export(
    request: Request,
    key: ExportKey,
    name: str,
    purpose: Annotated[
        str, Query(description="Consent purpose: only members who consented to it are exported")
    ],
    traits: Annotated[str, Query(description="Comma-separated trait names")] = "",
    computed: Annotated[str, Query(description="Comma-separated computed trait names")] = "",
    predicted: Annotated[
        str, Query(description="Comma-separated predicted trait names, e.g. churn_probability")
    ] = "",
    channel: Channel = None,
    if_empty: Annotated[
        Literal["csv", "error"],
        Query(description="csv: a header-only CSV when no member qualifies; error: 409 saying why"),
    ] = "csv",
) -> StreamingResponse:
    """The counts behind the file are in the header `X-OpenCDP-Reach` (members, with_identifier,
    consented, rows; as `GET /api/segments/{name}/reach`), and `X-OpenCDP-Empty-Reason` says why a
    header-only CSV is empty."""
    engine = _engine(request)
    found = _reach(engine, name, purpose, channel)
    purpose = found.purpose
    reason = reach.empty_reason(found)
    if reason and if_empty == "error":
        raise ApiError(409, "nothing_to_export", reason)
    trait_names = [t for t in traits.split(",") if t]
    computed_names = [c for c in computed.split(",") if c]
    predicted_names = [p for p in predicted.split(",") if p]
    detail = {
        "purpose": safe_token(purpose),
        "traits": [safe_token(t) for t in trait_names],
        "computed": [safe_token(c) for c in computed_names],
        "predicted": [safe_token(p) for p in predicted_names],
    }
    audit(request, key, "segment.export", "segment", name, detail)
    rows = queries.export_csv(
        engine, name, trait_names, computed_names, purpose, needs=found.identifier, predicted=predicted_names
    )
    filename = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "segment"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}.csv"',
        "X-OpenCDP-Reach": found.header(),
    }
    if reason:
        headers["X-OpenCDP-Empty-Reason"] = reason.encode("ascii", "replace").decode()
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers=headers)


class TraitOut(ComputedTrait):
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    failed_at: datetime | None = None


class TraitFailure(BaseModel):
    name: str
    error: str
    failed_at: datetime


class TraitList(BaseModel):
    definitions: list[TraitOut]
    derived: dict[str, str]
    failed: list[TraitFailure] = Field(
        default_factory=list,
        description="Traits that failed to evaluate (also those whose stored definition no longer "
        "validates, which are not in `definitions`)",
    )


@router.get("/traits/computed", response_model=TraitList, summary="Computed trait definitions")
def computed_traits(request: Request, _key: ReadKey) -> dict[str, Any]:
    with _engine(request).connect() as conn:
        failed = failures.failures(conn, "trait")
        definitions = [
            TraitOut(
                **d.model_dump(),
                status="failed" if d.name in failed else "ok",
                error=failed[d.name].error if d.name in failed else None,
                failed_at=failed[d.name].failed_at if d.name in failed else None,
            )
            for d in trait_store.definitions(conn)
        ]
    return {
        "definitions": definitions,
        "derived": DERIVED,
        "failed": [{"name": f.name, "error": f.error, "failed_at": f.failed_at} for f in failed.values()],
    }


@router.post(
    "/traits/computed",
    response_model=ComputedTrait,
    status_code=201,
    summary="Define a custom computed trait (applies as profiles update; run a refresh for all)",
)
def define_trait(
    request: Request, key: AdminKey, body: Annotated[ComputedTrait, AfterValidator(storable)]
) -> ComputedTrait:
    try:
        trait_store.define(_engine(request), body)
    except trait_store.TraitDefinitionError as exc:
        raise ApiError(400, "invalid_trait", str(exc), [{"field": "name", "problem": str(exc)}]) from None
    audit(request, key, "trait.define", "computed_trait", body.name, {"kind": body.kind})
    return body


@router.delete("/traits/computed/{name}", status_code=204, summary="Delete a custom computed trait")
def delete_trait(request: Request, key: AdminKey, name: str) -> None:
    try:
        trait_store.remove(_engine(request), name)
    except trait_store.TraitDefinitionError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    audit(request, key, "trait.delete", "computed_trait", name)
