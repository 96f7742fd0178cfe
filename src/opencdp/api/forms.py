"""Form analytics over the admin API: the forms seen, and one form's field funnel (needs `read`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from opencdp.api.auth import ReadKey
from opencdp.api.errors import ApiError
from opencdp.personalise.form_report import UnknownSegment, form_report, list_forms
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["forms"])

Days = Annotated[int, Query(ge=1, le=366, description="The window: the last this many days")]
SegmentName = Annotated[
    str | None, Query(max_length=200, description="Only the current members of this segment")
]


def _unknown(segment: str) -> ApiError:
    return ApiError(404, "not_found", f"there is no segment named {segment!r}")


@router.get("/forms", summary="Forms with events in the window: visitors, submitted, abandoned, errors")
def forms(
    request: Request, _key: ReadKey, days: Days = 30, segment: SegmentName = None
) -> list[dict[str, Any]]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        return list_forms(cdp.engine, days=days, segment=segment)
    except UnknownSegment:
        raise _unknown(segment or "") from None


@router.get(
    "/forms/{form_id}",
    summary="One form's report: the field funnel, errors, abandonment and time per field",
)
def form(
    request: Request,
    _key: ReadKey,
    form_id: Annotated[str, Path(min_length=1, max_length=200)],
    days: Days = 30,
    segment: SegmentName = None,
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        return form_report(cdp.engine, form_id, days=days, segment=segment).as_json()
    except UnknownSegment:
        raise _unknown(segment or "") from None
