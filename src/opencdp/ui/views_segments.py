"""Segments: the list, the builder (save, duplicate, delete), the live preview and CSV export."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from opencdp.access import audit
from opencdp.privacy.consent import ConsentError, list_purposes
from opencdp.segments import queries, reach, store
from opencdp.segments.language import CriteriaError
from opencdp.store.schema import segment_memberships, segments
from opencdp.ui.catalog import catalog
from opencdp.ui.criteria_words import problems_in_words
from opencdp.ui.display import format_number, viewer_of
from opencdp.ui.profiles import display_name
from opencdp.ui.web import (
    BadRequest,
    Checked,
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
DONE = {"saved": "Segment saved.", "duplicated": "Copy created.", "deleted": "Segment deleted."}


def _member_counts(engine: sa.Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.select(segment_memberships.c.segment_id, sa.func.count())
                .where(segment_memberships.c.exited_at.is_(None))
                .group_by(segment_memberships.c.segment_id)
            ).all()
        )


def _by_id(engine: sa.Engine, segment_id: int) -> store.Segment:
    with engine.connect() as conn:
        name = conn.execute(sa.select(segments.c.name).where(segments.c.id == segment_id)).scalar()
    if name is None:
        raise NotFound("There is no segment with this id (it may have been deleted).")
    return store.get(engine, name)


def _problems(exc: Exception) -> list[str]:
    """In words, each naming the builder's input it concerns (see `criteria_words`)."""
    return [p["message"] for p in problems_in_words(exc)]


@router.get("/segments")
def list_segments(request: Request, session: SignedIn, done: str = "") -> Response:
    engine = engine_of(request)
    counts = _member_counts(engine)
    rows = [{"segment": s, "members": counts.get(s.id, 0)} for s in store.list_all(engine)]
    return render(request, "segments.html", {"nav": "segments", "rows": rows, "done": DONE.get(done, "")})


def _builder(
    request: Request,
    segment: store.Segment | None,
    criteria: Any,
    name: str = "",
    description: str | None = None,
    problems: list[str] | None = None,
    status: int = 200,
    done: str = "",
    export: dict[str, Any] | None = None,
) -> Response:
    engine = engine_of(request)
    names = catalog(engine)
    members = _member_counts(engine).get(segment.id, 0) if segment else None
    if segment and export is None:
        export = _export_reach(request, segment, request.query_params.get("purpose", ""), "")
    return render(
        request,
        "segment_builder.html",
        {
            "nav": "segments",
            "segment": segment,
            "members": members,
            "name": segment.name if segment else name,
            "description": description if description is not None else segment.description if segment else "",
            "criteria_json": criteria if isinstance(criteria, dict) else {"and": []},
            "catalog": {
                **names,
                "segments": [s for s in names["segments"] if not segment or s != segment.name],
            },
            "problems": problems or [],
            "purposes": list_purposes(engine) if segment else [],
            "export": export or {},
            "done": DONE.get(done, ""),
        },
        status,
    )


@router.get("/segments/new")
def new_segment(request: Request, session: SignedIn) -> Response:
    return _builder(request, None, {"and": []})


@router.get("/segments/{segment_id}")
def edit_segment(request: Request, session: SignedIn, segment_id: int, done: str = "") -> Response:
    segment = _by_id(engine_of(request), segment_id)
    return _builder(request, segment, segment.criteria, done=done)


def _save(
    request: Request,
    session: Editor,
    segment: store.Segment | None,
    name: str,
    description: str,
    criteria_text: str,
) -> Response:
    engine = engine_of(request)
    try:
        criteria = orjson.loads(criteria_text)
    except orjson.JSONDecodeError:
        return _builder(
            request, segment, {"and": []}, name, description, ["The conditions could not be read."], 400
        )
    try:
        saved = store.save(
            engine, segment.name if segment else name, criteria, description, replace=segment is not None
        )
    except (CriteriaError, store.SegmentError) as exc:
        return _builder(request, segment, criteria, name, description, _problems(exc), 400)
    audit.record(engine, f"user:{session.user.id}", "segment.save", "segment", str(saved.id))
    return redirect(f"/segments/{saved.id}?done=saved")


@router.post("/segments")
def create_segment(
    request: Request,
    session: Editor,
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
    criteria: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    return _save(request, session, None, name, description, criteria)


@router.post("/segments/{segment_id}")
def update_segment(
    request: Request,
    session: Editor,
    segment_id: int,
    description: Annotated[str, Form(max_length=2000)] = "",
    criteria: Annotated[str, Form(max_length=200_000)] = "",
) -> Response:
    segment = _by_id(engine_of(request), segment_id)
    return _save(request, session, segment, segment.name, description, criteria)


@router.post("/segments/{segment_id}/duplicate")
def duplicate_segment(request: Request, session: Editor, segment_id: int) -> Response:
    engine = engine_of(request)
    segment = _by_id(engine, segment_id)
    taken = {s.name for s in store.list_all(engine)}
    base = segment.name[:180]
    name = next(
        n for n in (f"{base} (copy{f' {i}' if i > 1 else ''})" for i in range(1, 1000)) if n not in taken
    )
    copy = store.save(engine, name, segment.criteria, segment.description)
    audit.record(engine, f"user:{session.user.id}", "segment.save", "segment", str(copy.id))
    return redirect(f"/segments/{copy.id}?done=duplicated")


@router.post("/segments/{segment_id}/delete")
def delete_segment(request: Request, session: Editor, segment_id: int) -> Response:
    engine = engine_of(request)
    segment = _by_id(engine, segment_id)
    try:
        store.delete(engine, segment.name)
    except store.SegmentError as exc:
        return _builder(request, segment, segment.criteria, problems=[str(exc)], status=409)
    audit.record(engine, f"user:{session.user.id}", "segment.delete", "segment", str(segment.id))
    return redirect("/segments?done=deleted")


def _reach_texts(request: Request, found: reach.Reach) -> dict[str, Any]:
    viewer = viewer_of(request, ui_settings())

    def number(n: int) -> str:
        return format_number(n, viewer)

    return {
        **found.as_dict(),
        "summary": reach.summary(found, number),
        "empty_reason": reach.empty_reason(found, number),
    }


def _export_reach(request: Request, segment: store.Segment, purpose: str, channel: str) -> dict[str, Any]:
    """The export form's state: chosen purpose and channel with their reach, or the problem."""
    if not purpose:
        return {"purpose": "", "channel": channel}
    try:
        found = reach.reach(engine_of(request), segment.name, purpose, channel or None)
    except ConsentError as exc:
        return {"purpose": purpose, "channel": channel, "problem": str(exc)}
    return {**_reach_texts(request, found), "chosen": channel}  # "" = what the purpose suggests


@router.get("/ui/api/segments/{segment_id}/reach")
def segment_reach(
    request: Request, session: SignedIn, segment_id: int, purpose: str = "", channel: str = ""
) -> Response:
    """For the export form: counts only (members, with the identifier, consented, rows)."""
    segment = _by_id(engine_of(request), segment_id)
    found = _export_reach(request, segment, purpose, channel)
    if not purpose or "problem" in found:
        problem = found.get("problem") or "Choose the purpose the export is for."
        return JSONResponse({"problem": problem}, 400)
    return JSONResponse(found)


@router.get("/segments/{segment_id}/export.csv")
def export_segment(
    request: Request,
    session: SignedIn,
    segment_id: int,
    purpose: str = "",
    channel: str = "",
    traits: Annotated[list[str] | None, Query(max_length=100)] = None,
    computed: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> Response:
    """Only members who consented to the chosen purpose (and, for e-mail or SMS, have the address
    or number) leave the system (docs/privacy.md). When nobody qualifies, the segment page comes
    back saying why instead of a CSV with only its header."""
    engine = engine_of(request)
    segment = _by_id(engine, segment_id)
    try:
        found = reach.reach(engine, segment.name, purpose, channel or None)
    except ConsentError as exc:
        hint = "what the export is for" if str(exc).startswith("unknown channel") else "the purpose"
        raise BadRequest(f"{exc}. Choose {hint}.") from None
    if not found.rows:
        state = {**_reach_texts(request, found), "chosen": channel}
        return _builder(request, segment, segment.criteria, status=409, export=state)
    detail = {"purpose": found.purpose, "columns": len(traits or []) + len(computed or [])}
    audit.record(engine, f"user:{session.user.id}", "segment.export", "segment", str(segment.id), detail)
    rows = queries.export_csv(
        engine, segment.name, traits or [], computed or [], found.purpose, needs=found.identifier
    )
    filename = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in segment.name) or "segment"
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.csv"',
            "X-OpenCDP-Reach": found.header(),
        },
    )


class PreviewIn(BaseModel):
    criteria: dict[str, Any] = Field(..., description="A criteria document (docs/segments.md)")


@router.post("/ui/api/segments/preview")
def preview(request: Request, session: Checked, body: PreviewIn) -> Response:
    """Count and sample for the builder, nothing saved. Problems come back as 200 with `problems`
    (in words) and `issues` (the same with the path each concerns, so the page shows each beside
    its input), without treating them as failures."""
    started = time.perf_counter()
    try:
        result = queries.preview(engine_of(request), body.criteria, sample_size=8)
    except (CriteriaError, store.SegmentError) as exc:
        issues = problems_in_words(exc)
        return JSONResponse({"count": None, "problems": [i["message"] for i in issues], "issues": issues})
    sample = []
    for brief in result["sample"]:
        idents: dict[str, list[str]] = {}
        for ident in brief["identifiers"]:
            idents.setdefault(ident["type"], []).append(ident["value"])
        traits = brief["traits"] or {}
        sample.append(
            {
                "id": brief["id"],
                "label": display_name({"traits": traits, "identifiers": idents}),
                "email": (idents.get("email") or [""])[0],
                "country": str(traits.get("country", "")),
            }
        )
    return JSONResponse(
        {
            "count": result["count"],
            "sample": sample,
            "ms": round((time.perf_counter() - started) * 1000),
            "problems": [],
            "issues": [],
        }
    )
