"""Reports: the built-in views, saved reports, and CSV export of each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import StreamingResponse

from opencdp.access import audit
from opencdp.csvsafe import line
from opencdp.ui import reports
from opencdp.ui.catalog import catalog, numeric_properties, unknown_event, unknown_property
from opencdp.ui.display import chart_text, viewer_of
from opencdp.ui.views_uplift import experience_names
from opencdp.ui.web import (
    BadRequest,
    Editor,
    NotFound,
    SignedIn,
    UIRoute,
    engine_of,
    redirect,
    render,
    ui_settings,
)

router = APIRouter(route_class=UIRoute, include_in_schema=False)
DONE = {"saved": "Report saved.", "deleted": "Report deleted."}


def _query(request: Request) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        given.setdefault(key, []).append(value)
    return given


def _parse(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    try:
        return reports.parse_params(kind, given)
    except reports.ReportError as exc:
        raise BadRequest(str(exc)) from None


def unknown_names(request: Request, kind: str, params: dict[str, Any]) -> list[str]:
    """Event and property names that do not occur in the data, each with a sentence naming the
    field (a typo would otherwise show an empty report without saying why)."""
    engine = engine_of(request)
    problems = []
    for p in reports.KINDS[kind].params:
        value = params.get(p.name)
        if not value or value == p.default:  # the defaults are fine before the first order
            continue
        if p.kind == "event":
            problem = unknown_event(engine, value)
        elif p.kind == "property" and params.get("event") and not unknown_event(engine, params["event"]):
            problem = unknown_property(engine, params["event"], value)
        else:
            continue
        if problem:
            problems.append(f"{p.label}: {problem}")
    return problems


def _params_query(kind: str, params: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [("kind", kind)]
    for key, value in params.items():
        pairs += [(key, v) for v in value] if isinstance(value, list) else [(key, value)]
    return urlencode(pairs)


def _page(
    request: Request,
    kind: str,
    params: dict[str, Any],
    saved: dict[str, Any] | None,
    error: str = "",
    status: int = 200,
    done: str = "",
) -> Response:
    engine = engine_of(request)
    viewer = viewer_of(request, ui_settings())
    result = reports.run(engine, kind, params, text=chart_text(viewer))
    names = catalog(engine)
    problems = unknown_names(request, kind, params)
    if problems and not error:
        error, status = " ".join(problems), 400
    export = (
        f"/reports/{saved['id']}/export.csv?{_params_query(kind, params)}"
        if saved
        else f"/reports/export.csv?{_params_query(kind, params)}"
    )
    return render(
        request,
        "report.html",
        {
            "nav": "reports",
            "kind": kind,
            "spec": reports.KINDS[kind],
            "params": params,
            "saved": saved,
            "result": result,
            "export_url": export,
            "segment_names": names["segments"],
            "event_names": sorted({e["name"] for e in names["events"]}),
            "property_names": numeric_properties(engine, params.get("event") or ""),
            "error": error,
            "done": DONE.get(done, ""),
        },
        status,
    )


@router.get("/reports")
def list_reports(request: Request, session: SignedIn, done: str = "") -> Response:
    return render(
        request,
        "reports.html",
        {
            "nav": "reports",
            "saved": reports.list_saved(engine_of(request)),
            "kinds": reports.KINDS,
            "done": DONE.get(done, ""),
            "experiences": experience_names(engine_of(request)),  # issue 10: links to their uplift
        },
    )


@router.get("/reports/view")
def view_report(request: Request, session: SignedIn, kind: str = "events_by_source") -> Response:
    return _page(request, kind, _parse(kind, _query(request)), None)


def _csv(result: reports.Result) -> Iterator[str]:
    yield line(result.columns)
    for row in result.rows:
        yield line(row)


def _csv_response(
    request: Request, session: SignedIn, kind: str, params: dict[str, Any], name: str
) -> Response:
    engine = engine_of(request)
    problems = unknown_names(request, kind, params)
    if problems:
        raise BadRequest(" ".join(problems))
    audit.record(engine, f"user:{session.user.id}", "report.export", "report", kind)
    filename = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "report"
    return StreamingResponse(
        _csv(reports.run(engine, kind, params)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


@router.get("/reports/export.csv")
def export_view(request: Request, session: SignedIn, kind: str = "events_by_source") -> Response:
    return _csv_response(request, session, kind, _parse(kind, _query(request)), kind)


def _saved(request: Request, report_id: int) -> dict[str, Any]:
    found = reports.get_saved(engine_of(request), report_id)
    if found is None:
        raise NotFound("There is no saved report with this id (it may have been deleted).")
    return found


@router.get("/reports/{report_id}")
def saved_report(request: Request, session: SignedIn, report_id: int, done: str = "") -> Response:
    found = _saved(request, report_id)
    given = _query(request)
    params = _parse(found["kind"], given if "days" in given else found["params"])
    return _page(request, found["kind"], params, found, done=done)


@router.get("/reports/{report_id}/export.csv")
def export_saved(request: Request, session: SignedIn, report_id: int) -> Response:
    found = _saved(request, report_id)
    given = _query(request)
    params = _parse(found["kind"], given if "days" in given else found["params"])
    return _csv_response(request, session, found["kind"], params, found["name"])


Segments = Annotated[list[str] | None, Form()]
Text = Annotated[str | None, Form(max_length=500)]


def _form_params(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@router.post("/reports")
def create_report(
    request: Request,
    session: Editor,
    name: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=50)] = "",
    segments: Segments = None,
    days: Text = None,
    event: Text = None,
    property: Text = None,
    from_event: Text = None,
    to_event: Text = None,
) -> Response:
    given = _form_params(
        segments=segments, days=days, event=event, property=property, from_event=from_event, to_event=to_event
    )
    params = _parse(kind, given)
    if unknown_names(request, kind, params):
        return _page(request, kind, params, None, status=400)  # the page names the unknown names
    try:
        report_id = reports.save(engine_of(request), name, kind, params, session.user.id)
    except reports.ReportError as exc:
        return _page(request, kind, params, None, str(exc), 400)
    audit.record(engine_of(request), f"user:{session.user.id}", "report.save", "report", str(report_id))
    return redirect(f"/reports/{report_id}?done=saved")


@router.post("/reports/{report_id}")
def update_report(
    request: Request,
    session: Editor,
    report_id: int,
    name: Annotated[str, Form(max_length=200)] = "",
    segments: Segments = None,
    days: Text = None,
    event: Text = None,
    property: Text = None,
    from_event: Text = None,
    to_event: Text = None,
) -> Response:
    found = _saved(request, report_id)
    given = _form_params(
        segments=segments, days=days, event=event, property=property, from_event=from_event, to_event=to_event
    )
    params = _parse(found["kind"], given)
    if unknown_names(request, found["kind"], params):
        return _page(request, found["kind"], params, found, status=400)
    try:
        reports.save(engine_of(request), name, found["kind"], params, session.user.id, report_id)
    except reports.ReportError as exc:
        return _page(request, found["kind"], params, found, str(exc), 400)
    audit.record(engine_of(request), f"user:{session.user.id}", "report.save", "report", str(report_id))
    return redirect(f"/reports/{report_id}?done=saved")


@router.post("/reports/{report_id}/delete")
def delete_report(request: Request, session: Editor, report_id: int) -> Response:
    _saved(request, report_id)
    reports.delete(engine_of(request), report_id)
    audit.record(engine_of(request), f"user:{session.user.id}", "report.delete", "report", str(report_id))
    return redirect("/reports?done=deleted")
