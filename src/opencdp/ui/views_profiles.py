"""Profile search and the 360° view of one customer."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from opencdp.access import audit
from opencdp.journeys.store import profile_journeys
from opencdp.personalise.profile_sessions import page_path, sessions_of
from opencdp.privacy.consent import ConsentError, list_purposes, require_purpose
from opencdp.profiles.reader import ProfileNotFound, TimelineOrder, get_profile, merge_history, timeline_rows
from opencdp.system import OpenCDP
from opencdp.ui import profile_view as view
from opencdp.ui import profiles as data
from opencdp.ui import views_unmerge
from opencdp.ui.profiles import Filters
from opencdp.ui.web import BadRequest, NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
PAGE = 25
UNMERGE_DONE = {
    "unmerged": "Unmerged: the two identifiers are separate profiles now, and no event will join them again.",
    "unmerge_waiting": "Unmerge recorded: the profile is split when processing runs next (reload to see it).",
    "allowed": "Allowed again: the profiles were resolved without the rejection.",
}
SESSION_DAYS = 90  # the Sessions panel shows the latest sessions of this many days
SESSIONS_SHOWN = 10
LATE = timedelta(minutes=5)  # the timeline shows both times when arrival was this much later


def _filters(
    request: Request, country: str, segment: str, has_email: bool, consent: str, seen: str
) -> Filters:
    if seen and not (seen.isdigit() and 1 <= int(seen) <= 36_500):
        raise BadRequest("“Seen within” takes a number of days.")
    purpose = ""
    if consent:
        try:
            with engine_of(request).connect() as conn:
                purpose = require_purpose(conn, consent)
        except ConsentError as exc:
            raise BadRequest(f"{exc}.") from None
    return Filters(country.strip(), segment.strip(), has_email, purpose, int(seen) if seen else None)


Text = Annotated[str, Query(max_length=300)]
Short = Annotated[str, Query(max_length=64)]


@router.get("/profiles")
def search(
    request: Request,
    session: SignedIn,
    q: Text = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    country: Short = "",
    segment: Short = "",
    has_email: bool = False,
    consent: Short = "",
    seen: Short = "",
    sort: Short = "",
) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    filters = _filters(request, country, segment, has_email, consent, seen)
    if sort and (sort not in data.SORTS or (sort == "relevance" and not q.strip())):
        raise BadRequest(f"Sort by one of: {', '.join(data.SORTS)}.")
    order = cast(data.Sort, sort or ("relevance" if q.strip() else "last_seen"))
    found = data.listing(cdp.engine, cdp.processor.rules, q, filters, order, page, data.PAGE_SIZE)
    if len(found["exact"]) == 1 and page == 1 and not filters.active:  # one exact hit: open it
        return redirect(f"/profiles/{quote(found['exact'][0], safe='')}")
    params = {
        k: v
        for k, v in (
            ("q", q),
            ("country", filters.country),
            ("segment", filters.segment),
            ("has_email", "1" if filters.has_email else ""),
            ("consent", filters.consent),
            ("seen", seen),
            ("sort", sort),
        )
        if v
    }
    if not found["rows"] and page > found["pages"]:  # past the end (the list shrank): its last page
        return redirect("/profiles?" + urlencode(params | {"page": found["pages"]}))
    for item in found["rows"]:
        item["label"] = data.display_name(item)
    return render(
        request,
        "profiles.html",
        {
            "nav": "profiles",
            "q": q,
            "found": found,
            "filters": filters,
            "seen": seen,
            "sort": order,
            "sorts": {k: v for k, v in data.SORTS.items() if k != "relevance" or q.strip()},
            "choices": data.choices(cdp.engine),
            "purposes": list_purposes(cdp.engine),
            "params": params,
            "page_url": lambda n: "/profiles?" + urlencode(params | {"page": n}),
        },
    )


@router.get("/profiles/export.csv")
def export_list(
    request: Request,
    session: SignedIn,
    purpose: Short = "",
    q: Text = "",
    country: Short = "",
    segment: Short = "",
    has_email: bool = False,
    consent: Short = "",
    seen: Short = "",
) -> Response:
    """The whole list, not just one page; only profiles that consented to the chosen purpose leave
    the system (docs/privacy.md), exactly as in segment exports."""
    cdp: OpenCDP = request.app.state.cdp
    filters = _filters(request, country, segment, has_email, consent, seen)
    try:
        with cdp.engine.connect() as conn:
            purpose = require_purpose(conn, purpose)
    except ConsentError as exc:
        raise BadRequest(f"{exc}. Choose the purpose the export is for.") from None
    detail: dict[str, Any] = {
        "purpose": purpose,
        "search": bool(q.strip()),  # the text may be personal data: only whether there was one
        "filters": {k: v for k, v in asdict(filters).items() if v},
    }
    audit.record(cdp.engine, f"user:{session.user.id}", "profiles.export", "profile_list", None, detail)
    return StreamingResponse(
        data.export_csv(cdp.engine, cdp.processor.rules, q, filters, purpose),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="profiles-{purpose}.csv"'},
    )


def _summary(event: dict[str, Any]) -> tuple[list[tuple[str, Any]], str | None]:
    """A few properties or traits of an event to show in its timeline row, and their currency."""
    payload = event.get("payload") or {}
    shown = payload.get("properties") or payload.get("traits") or {}
    if not isinstance(shown, dict):
        return [], None
    currency = shown.get("currency")
    pairs = [(str(k), v) for k, v in shown.items() if k != "currency"][:5]
    return pairs, currency if isinstance(currency, str) else None


@router.get("/profiles/{profile_id}")
def profile(
    request: Request,
    session: SignedIn,
    profile_id: str,
    before: int | None = Query(None, ge=1),
    order: TimelineOrder = "time",
    done: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    engine = engine_of(request)
    try:
        found = get_profile(engine, profile_id)
    except ProfileNotFound:
        raise NotFound("There is no profile with this id.") from None
    if found["id"] != profile_id:  # merged into another profile: show the survivor
        return redirect(f"/profiles/{found['id']}")
    history = merge_history(engine, profile_id)
    with engine.connect() as conn:
        events = timeline_rows(conn, profile_id, order, before, PAGE + 1)
        journeys = profile_journeys(conn, profile_id)
        rejected_by = views_unmerge.rejected_by(conn, history["rejections"])
        gap = request.app.state.cdp.settings.session_gap_minutes
        visits = sessions_of(
            conn,
            profile_id,
            since=datetime.now(UTC) - timedelta(days=SESSION_DAYS),
            gap=timedelta(minutes=gap),
        )
    more = len(events) > PAGE
    events = events[:PAGE]
    for event in events:
        event["summary"], event["currency"] = _summary(event)
        event["late"] = abs(event["received_at"] - event["timestamp"]) > LATE
        event["details"] = orjson.dumps(event["payload"], option=orjson.OPT_INDENT_2).decode()
        event["label"] = event["event"] or event["payload"].get("name") or event["type"]
    extras = view.extras(engine, profile_id)
    idents: dict[str, list[str]] = {}
    for ident in found["identifiers"]:
        idents.setdefault(ident["type"], []).append(ident["value"])
    label = data.display_name(
        {"traits": {k: v["value"] for k, v in found["traits"].items()}, "identifiers": idents}
    )
    audit.record(engine, f"user:{session.user.id}", "profile.view", "profile", profile_id)
    return render(
        request,
        "profile.html",
        {
            "nav": "profiles",
            "p": found,
            "label": label,
            "extras": extras,
            "head": view.header(found, extras["computed_values"]),
            "order": order,
            "events": events,
            "before": before,
            "next_before": events[-1]["id"] if more and events else None,
            "history": history,
            "rejected_by": rejected_by,
            "can_unmerge": session.user.role == "admin",
            "done": UNMERGE_DONE.get(done, ""),
            "journeys": journeys,
            "sessions": [
                {
                    **v.summary(),
                    "events_list": [
                        {"ts": e.ts, "type": e.type, "name": e.name, "path": page_path(e)} for e in v.events
                    ],
                }
                for v in reversed(visits[-SESSIONS_SHOWN:])
            ],
            "sessions_total": len(visits),
            "session_gap": gap,
            "session_days": SESSION_DAYS,
        },
    )
