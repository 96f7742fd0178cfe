"""One router with every dashboard page, and the static files it needs."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from opencdp.ui import (
    views_accounts,
    views_auth,
    views_destinations,
    views_experiences,
    views_forms,
    views_journeys,
    views_matching,
    views_overview,
    views_predictions,
    views_profiles,
    views_reports,
    views_segments,
    views_unmerge,
    views_uplift,
    views_users,
)
from opencdp.ui.web import UIRoute, static_response

router = APIRouter(route_class=UIRoute, include_in_schema=False)


@router.get("/ui/static/{name}")
def static(request: Request, name: str) -> Response:
    """The CSS and JS, served from memory with an ETag (URLs carry a content hash, so caching is safe)."""
    return static_response(name, request.headers.get("if-none-match"))


for _views in (
    views_auth,
    views_overview,
    views_profiles,
    views_segments,
    views_uplift,  # issue 10; before views_reports: /reports/segment-performance is not a report id
    views_reports,
    views_destinations,
    views_journeys,
    views_experiences,
    views_predictions,
    views_forms,
    views_matching,
    views_unmerge,
    views_accounts,  # issue 16: customer login's client applications
    views_users,
):
    router.include_router(_views.router)
