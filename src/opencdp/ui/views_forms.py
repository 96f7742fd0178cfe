"""Form analytics in the dashboard: the forms seen (visitors, submitted, abandoned, errors), and
per form the field funnel (reached, completed, errored, abandoned at), time per field, error rate
and the most frequent error messages, for everyone or one segment (personalise/form_report.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response

from opencdp.personalise.form_report import UnknownSegment, form_report, list_forms
from opencdp.store.schema import segments
from opencdp.ui import charts
from opencdp.ui.display import chart_text, viewer_of
from opencdp.ui.web import BadRequest, NotFound, SignedIn, UIRoute, engine_of, render, ui_settings

router = APIRouter(route_class=UIRoute, include_in_schema=False)
PERIODS = (7, 30, 90)


def _filters(request: Request, days: int, segment: str) -> dict[str, Any]:
    if days not in PERIODS:
        raise BadRequest(f"days must be one of {', '.join(map(str, PERIODS))}")
    with engine_of(request).connect() as conn:
        names = list(conn.execute(sa.select(segments.c.name).order_by(segments.c.name)).scalars())
    return {"days": days, "segment": segment, "segments": names, "periods": PERIODS}


@router.get("/forms")
def forms_page(request: Request, session: SignedIn, days: int = 30, segment: str = "") -> Response:
    context = _filters(request, days, segment)
    try:
        rows = list_forms(engine_of(request), days=days, segment=segment or None)
    except UnknownSegment:
        raise NotFound(f"There is no segment named {segment!r}.") from None
    return render(request, "forms.html", {"nav": "forms", "forms": rows, **context})


@router.get("/forms/{form_id}")
def form_page(
    request: Request, session: SignedIn, form_id: str, days: int = 30, segment: str = ""
) -> Response:
    context = _filters(request, days, segment)
    try:
        report = form_report(engine_of(request), form_id, days=days, segment=segment or None)
    except UnknownSegment:
        raise NotFound(f"There is no segment named {segment!r}.") from None
    labels = [f.field for f in report.fields]
    funnel = charts.stacked_bar_chart(
        labels,
        {
            "completed": [float(f.completed) for f in report.fields],
            "reached, not completed": [float(f.reached - f.completed) for f in report.fields],
        },
        f"Visitors per field of {form_id}",
        text=chart_text(viewer_of(request, ui_settings())),
    )
    return render(
        request,
        "form.html",
        {"nav": "forms", "report": report, "form_id": form_id, "funnel": funnel, **context},
    )
