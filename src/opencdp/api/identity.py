"""Undoing merges over the API: reject a link of a profile (`POST /api/profiles/{id}/unmerge`),
list the rejections (`GET /api/identity/rejections`, read keys: they name identifiers like a
profile does) and allow a pair again (`DELETE /api/identity/rejections/{id}`, admin). Every call is
audited by ids only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey, storable
from opencdp.api.errors import ApiError
from opencdp.identity.identifiers import Identifier
from opencdp.profiles.reader import ProfileNotFound
from opencdp.profiles.unmerge import (
    MAX_REASON,
    UnmergeError,
    get_rejection,
    list_rejections,
    profile_ids_of,
    reject,
)
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["identity"])

Text = Annotated[str, AfterValidator(storable)]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class IdentifierIn(BaseModel):
    type: Text = Field(..., min_length=1, max_length=64, description="e.g. user_id, email, anonymous_id")
    value: Text = Field(..., min_length=1, max_length=256)


class UnmergeIn(BaseModel):
    link_id: int | None = Field(
        None, ge=1, le=2**63 - 1, description="A link of the profile (`GET /api/profiles/{id}/merges`)"
    )
    left: IdentifierIn | None = Field(None, description="Or the two identifiers that are not one person")
    right: IdentifierIn | None = None
    reason: Text | None = Field(None, max_length=MAX_REASON, description="Why (shown in the merge history)")


class IdentifierOut(BaseModel):
    type: str
    value: str


class RejectionOut(BaseModel):
    id: int
    left: IdentifierOut
    right: IdentifierOut
    reason: str | None
    created_by: str | None = Field(..., description="Who rejected it: key:ID, user:ID or cli")
    created_at: datetime
    applied_at: datetime | None = Field(
        ..., description="When the processor split the profiles (null: waiting for its next step)"
    )


class UnmergeOut(RejectionOut):
    profile_id: str = Field(..., description="The profile the link was taken from (the survivor)")
    created: bool = Field(..., description="False when the pair was already rejected")


class RejectionList(BaseModel):
    rejections: list[RejectionOut]


class AllowOut(BaseModel):
    id: int
    profiles: list[str] = Field(..., description="The live profiles of the pair's identifiers now")


def _cdp(request: Request) -> OpenCDP:
    return request.app.state.cdp


@router.post(
    "/profiles/{profile_id}/unmerge",
    response_model=UnmergeOut,
    status_code=202,
    summary="Undo a merge: these two identifiers are not one person",
    description="Give `link_id` (a link of the profile's merge history) or `left` and `right` "
    "(two identifiers of the profile). The rejection is stored at once and applied by the "
    "processor's next step (within a second): the profile is resolved again as if no event had "
    "joined the pair, and no later event will. 202 with `applied_at` null; 200 if the pair was "
    "already rejected. Undo with `DELETE /api/identity/rejections/{id}`.",
    responses={200: {"model": UnmergeOut, "description": "The pair was already rejected"}},
)
def unmerge(request: Request, key: AdminKey, profile_id: str, body: UnmergeIn) -> Any:
    cdp = _cdp(request)
    rules = cdp.processor.rules
    left = right = None
    if body.link_id is None:
        sides = []
        for name, given in (("left", body.left), ("right", body.right)):
            if given is None:
                raise ApiError(
                    400,
                    "invalid_unmerge",
                    f"{name}: required without link_id",
                    [{"field": name, "problem": "required without link_id"}],
                )
            ident = rules.normalise(given.type, given.value)
            if ident is None:
                problem = "not a usable identifier (blocked or malformed)"
                raise ApiError(
                    400, "invalid_unmerge", f"{name}: {problem}", [{"field": name, "problem": problem}]
                )
            sides.append(ident)
        left, right = sides
    try:
        out = reject(
            cdp.engine,
            profile_id,
            link_id=body.link_id,
            left=left,
            right=right,
            reason=body.reason,
            created_by=key.actor,
        )
    except ProfileNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except UnmergeError as exc:
        raise ApiError(
            400, "invalid_unmerge", str(exc), [{"field": exc.field, "problem": exc.message}]
        ) from None
    if cdp.loop is not None:
        cdp.loop.notify()
    audit(request, key, "identity.unmerge", "profile", out["profile_id"], {"rejection": out["id"]})
    return JSONResponse(
        UnmergeOut.model_validate(out).model_dump(mode="json"), status_code=202 if out["created"] else 200
    )


@router.get(
    "/identity/rejections",
    response_model=RejectionList,
    summary="The operator's rejected pairs (undone merges), newest first",
)
def rejections(
    request: Request,
    key: ReadKey,
    type: Annotated[
        str | None, Query(min_length=1, max_length=64, description="Only those naming this identifier")
    ] = None,
    value: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> dict[str, Any]:
    cdp = _cdp(request)
    idents = None
    if type is not None or value is not None:
        if type is None or value is None:
            field = "type" if type is None else "value"
            raise ApiError(
                400,
                "invalid_query",
                f"{field}: give type and value together",
                [{"field": field, "problem": "give type and value together"}],
            )
        ident = cdp.processor.rules.normalise(type, value)
        idents = [ident] if ident is not None else []
    with cdp.engine.connect() as conn:
        rows = list_rejections(conn, idents)
    audit(request, key, "identity.rejections", detail={"count": len(rows)})
    return {"rejections": rows}


@router.delete(
    "/identity/rejections/{rejection_id}",
    response_model=AllowOut,
    summary="Allow a rejected pair again (undo an unmerge)",
    description="Deletes the rejection and resolves the pair's profiles again without it, under the "
    "processing lock, before answering: the identifiers join again if events link them.",
)
def allow_again(request: Request, key: AdminKey, rejection_id: RowId) -> dict[str, Any]:
    cdp = _cdp(request)
    with cdp.engine.connect() as conn:
        found = get_rejection(conn, rejection_id)
    if found is None:
        raise ApiError(404, "not_found", f"no rejection {rejection_id}")
    if cdp.processor.allow_again(rejection_id) is None:
        raise ApiError(404, "not_found", f"no rejection {rejection_id}")
    pair = [Identifier(found[s]["type"], found[s]["value"]) for s in ("left", "right")]
    with cdp.engine.connect() as conn:
        profiles = profile_ids_of(conn, pair)
    audit(request, key, "identity.unmerge_undo", "rejection", str(rejection_id), {"profiles": profiles})
    return {"id": rejection_id, "profiles": profiles}
