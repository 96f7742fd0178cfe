"""The uplift report of an experience and the segment-performance view over the admin API (read).

GET /api/experiences/{name}/uplift?goal=&days=&attribution_days=&segment=
GET /api/reports/segment-performance?days=&min_visitors=
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from opencdp.api.auth import ReadKey
from opencdp.api.errors import ApiError
from opencdp.personalise.segment_performance import DEFAULT_DAYS, DEFAULT_MIN_VISITORS, segment_performance
from opencdp.personalise.uplift import DEFAULT_ATTRIBUTION_DAYS, UpliftError, uplift_report
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["personalisation"])


@router.get(
    "/experiences/{name}/uplift",
    summary="Uplift of an experience: per variant, treated vs holdout, with 95 % intervals and by segment",
)
def get_uplift(
    request: Request,
    _key: ReadKey,
    name: Annotated[str, Path(min_length=1, max_length=200, description="The experience's name")],
    goal: Annotated[
        str | None,
        Query(min_length=1, max_length=500, description="Goal event [default: the experience's goal]"),
    ] = None,
    days: Annotated[
        float | None, Query(gt=0, le=3650, description="Only exposures of the last N days [default: all]")
    ] = None,
    attribution_days: Annotated[
        float, Query(gt=0, le=365, description="A goal counts this long after the first exposure")
    ] = DEFAULT_ATTRIBUTION_DAYS,
    segment: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Only this segment in the breakdown")
    ] = None,
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        return uplift_report(
            cdp.engine, name, goal=goal, days=days, attribution_days=attribution_days, segment=segment
        )
    except UpliftError as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.get(
    "/reports/segment-performance",
    summary="Conversion by segment x product category, low-converting cells flagged",
)
def get_segment_performance(
    request: Request,
    _key: ReadKey,
    days: Annotated[float, Query(gt=0, le=3650, description="The last N days")] = DEFAULT_DAYS,
    min_visitors: Annotated[
        int, Query(ge=1, le=1_000_000, description="A cell needs this many visitors to be flagged low")
    ] = DEFAULT_MIN_VISITORS,
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    return segment_performance(cdp.engine, days=days, min_visitors=min_visitors)
