"""Profile search and the 360° view of one customer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response

from opencdp.access import audit
from opencdp.journeys.store import profile_journeys
from opencdp.profiles.reader import ProfileNotFound, get_profile, merge_history
from opencdp.system import OpenCDP
from opencdp.ui import profile_view as view
from opencdp.ui import profiles as data
from opencdp.ui.web import NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
PAGE = 25
LATE = timedelta(minutes=5)  # the timeline shows both times when arrival was this much later


@router.get("/profiles")
def search(request: Request, session: SignedIn, q: str = Query("", max_length=300)) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    results = data.search(cdp.engine, cdp.processor.rules, q)
    for item in results:
        item["label"] = data.display_name(item)
    return render(request, "profiles.html", {"nav": "profiles", "q": q, "results": results})


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
    order: Literal["time", "arrival"] = "time",
) -> Response:
    engine = engine_of(request)
    try:
        found = get_profile(engine, profile_id)
    except ProfileNotFound:
        raise NotFound("There is no profile with this id.") from None
    if found["id"] != profile_id:  # merged into another profile: show the survivor
        return redirect(f"/profiles/{found['id']}")
    with engine.connect() as conn:
        events = view.timeline(conn, profile_id, order, before, PAGE + 1)
        journeys = profile_journeys(conn, profile_id)
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
            "history": merge_history(engine, profile_id),
            "journeys": journeys,
        },
    )
