"""Journeys: the list with their numbers, create and edit (each save a new version), activate and
pause, delete, and per journey its steps with where profiles are and what happened there, and its
version history.

Everything goes through `opencdp.journeys.store` like the API and the CLI, and every change is
written to the audit log in the same transaction, with the signed-in user as actor (never the
definition itself: the version history keeps that).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response

from opencdp.access import audit
from opencdp.journeys.store import JourneyError, delete, get, list_all, save, set_status, versions
from opencdp.store.schema import journeys
from opencdp.ui.sessions import Session
from opencdp.ui.users import list_users
from opencdp.ui.web import Editor, NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
DONE = {
    "saved": "Journey saved as a new version.",
    "created": "Journey saved as a draft: activate it to let profiles in.",
    "activated": "Journey active: profiles enter from events logged from now on.",
    "paused": "Journey paused: no one enters or moves on until it is activated again.",
    "deleted": "Journey deleted, with its versions and its profiles' history.",
}
#: the starting point of a new journey (docs/journeys.md, abandoned checkout)
EXAMPLE: dict[str, Any] = {
    "entry": {"event": "Checkout Started"},
    "goal": {"event": "Order Completed"},
    "reentry": {"after_days": 1},
    "caps": {"per_channel": {"email": {"max": 3, "days": 7}}},
    "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"},
    "steps": [
        {"id": "grace", "wait": {"hours": 2}},
        {
            "id": "coupon mail",
            "send": {
                "destination": "email",
                "channel": "email",
                "content": {"subject": "Forgot something?", "code": "CART25"},
            },
        },
        {"id": "two days", "wait": {"days": 2}},
        {"id": "to ads", "set_traits": {"ads_abandoned_checkout": True}},
    ],
}
#: what each line of the example means, shown beside it
EXAMPLE_NOTES = (
    ("entry", "a profile enters when it logs Checkout Started (after activation)"),
    ("goal", "Order Completed converts: the profile leaves, counted in the conversion rate"),
    ("reentry", "it may enter again a day after its last entry"),
    ("caps", "at most 3 e-mails in 7 days, counted over all journeys (more are skipped: capped)"),
    ("quiet_hours", "a send between 21:00 and 08:00 Berlin time waits for the morning (held)"),
    ("steps", "wait 2 h, mail the coupon through the destination “email”, wait 2 days, set a trait"),
)
ENTRIES = (
    ('{"event": "Checkout Started", "where": […]}', "each matching event logged after activation"),
    ('{"segment": "VIP", "on": "entered"}', "profiles entering (or exiting) a saved segment"),
    ('{"computed": "rfm_segment", "to": "At risk"}', "a computed trait changes (to that value)"),
    (
        '{"schedule": {"every": "week", "day": "monday", "at": "09:00"}, "audience": "…"}',
        "every member of a segment at each occurrence",
    ),
    (
        '{"struggling": {"form_id": "signup"}}',
        "a visitor starts struggling with a form (errors on one field)",
    ),
)
STEPS = (
    ('{"wait": {"minutes": 30, "hours": 2, "days": 1}}', "goes on after that long"),
    (
        '{"wait_for": {"event": "Email Opened", "within": {"days": 2}, "then": "a", "timeout": "b"}}',
        "to then when it happens, to timeout when not",
    ),
    ('{"branch": {"if": {…criteria…}, "then": "a", "else": "b"}}', "criteria on the profile now"),
    ('{"send": {"destination": "email", "channel": "email", "content": {…}}}', "a delivery"),
    ('{"set_traits": {"preferred_channel": "sms"}}', "changes traits (an identify event)"),
    ('{"tag": {"add": "vip"}}', "adds (or removes) a tag"),
    ('{"exit": true}', "leaves the journey"),
)
#: the per-step counts shown, in this order (others follow)
ACTIONS = ("waiting", "sent", "held", "capped", "skipped", "branched", "traits", "tagged", "paused")


def _actor(session: Session) -> str:
    return f"user:{session.user.id}"


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _status(exc: JourneyError) -> int:
    return 400 if exc.status == 422 else exc.status


def _journey(conn: sa.Connection, journey_id: int) -> dict[str, Any]:
    try:
        return get(conn, journey_id)
    except JourneyError:
        raise NotFound("There is no journey with this id (it may have been deleted).") from None


# --- What a definition says, in words ----------------------------------------------------------


def _duration(d: dict[str, Any]) -> str:
    units = (("days", "d"), ("hours", "h"), ("minutes", "min"))
    parts = [f"{d[k]:g} {unit}" for k, unit in units if d.get(k)]
    return " ".join(parts) or "0 min"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def describe_step(step: dict[str, Any]) -> str:
    """One step as a short sentence: wait 2 h, send to "email" (email), branch …"""
    if "wait" in step:
        text = f"wait {_duration(step['wait'])}"
    elif "wait_for" in step:
        w = step["wait_for"]
        text = f'wait up to {_duration(w["within"])} for "{w["event"]}"'
        if w.get("then") or w.get("timeout"):
            text += f" → {w.get('then') or 'next step'}, else → {w.get('timeout') or 'next step'}"
    elif "branch" in step:
        b = step["branch"]
        text = f"branch: if {_json(b.get('if'))} → {b['then']}, else → {b['else']}"
    elif "send" in step:
        s = step["send"]
        text = f'send to "{s["destination"]}" ({s.get("channel", "default")})'
    elif "set_traits" in step:
        text = "set " + ", ".join(f"{k} = {_json(v)}" for k, v in step["set_traits"].items())
    elif "tag" in step:
        change = step["tag"]
        text = f'tag: add "{change["add"]}"' if change.get("add") else f'tag: remove "{change.get("remove")}"'
    elif "exit" in step:
        text = "exit"
    else:
        text = _json({k: v for k, v in step.items() if k not in ("id", "next")})
    if step.get("next"):
        text += f", then → {step['next']}"
    return text


def describe_entry(entry: dict[str, Any]) -> str:
    if "schedule" in entry:
        s = entry["schedule"]
        when = f"every {s['every']}" + (f" on {s['day']}" if s.get("day") else "")
        at = f"{s.get('at', '09:00')} {s.get('timezone', 'UTC')}"
        return f'{when} at {at}: members of "{entry["audience"]}"'
    if "event" in entry:
        where = f" where {_json(entry['where'])}" if entry.get("where") else ""
        return f'event "{entry["event"]}"{where}'
    if "segment" in entry:
        return f'{entry.get("on", "entered")} segment "{entry["segment"]}"'
    if "computed" in entry:
        to = f" to {_json(entry['to'])}" if "to" in entry else ""
        return f'computed trait "{entry["computed"]}" changes{to}'
    if "struggling" in entry:
        form = (entry["struggling"] or {}).get("form_id")
        return f'struggles with form "{form}"' if form else "struggles with a form"
    return _json(entry)


def _steps(journey: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps in definition order, each with what it does, who is there now and its counts."""
    counts = journey["stats"]["steps"]
    out = []
    for step in journey["definition"].get("steps", []):
        here = dict(counts.get(step["id"], {}))
        now_here = here.pop("now_here", 0)
        actions = [(a, here.pop(a)) for a in ACTIONS if a in here] + sorted(here.items())
        out.append({"id": step["id"], "does": describe_step(step), "now_here": now_here, "actions": actions})
    return out


# --- The list ---------------------------------------------------------------------------------


@router.get("/journeys")
def list_journeys(request: Request, session: SignedIn, done: str = "") -> Response:
    with engine_of(request).connect() as conn:
        found = list_all(conn)
    context = {"nav": "journeys", "journeys": found, "done": DONE.get(done, "")}
    return render(request, "journeys.html", context)


# --- Create and edit --------------------------------------------------------------------------


def _form(
    request: Request,
    journey: dict[str, Any] | None,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    errors = errors or {}
    return render(
        request,
        "journey_form.html",
        {
            "nav": "journeys",
            "journey": journey,
            "values": values,
            "errors": errors,
            "definition_errors": sorted((f, m) for f, m in errors.items() if f.split(".")[0] == "definition"),
            "example": _pretty(EXAMPLE),
            "example_notes": EXAMPLE_NOTES,
            "entries": ENTRIES,
            "steps": STEPS,
        },
        status,
    )


def _document(text: str) -> Any:
    try:
        return orjson.loads(text or "null")
    except orjson.JSONDecodeError as exc:
        raise JourneyError("definition", f"not valid JSON ({exc})") from None


@router.get("/journeys/new")
def new_journey(request: Request, session: SignedIn) -> Response:
    return _form(request, None, {"name": "", "description": "", "definition": _pretty(EXAMPLE)})


@router.post("/journeys")
def create_journey(
    request: Request,
    session: Editor,
    name: Annotated[str, Form(max_length=400)] = "",
    description: Annotated[str, Form(max_length=4000)] = "",
    definition: Annotated[str, Form(max_length=500_000)] = "",
) -> Response:
    values = {"name": name, "description": description, "definition": definition}
    try:
        document = _document(definition)
        with engine_of(request).begin() as conn:
            if conn.execute(sa.select(journeys.c.id).where(journeys.c.name == name.strip())).first():
                raise JourneyError("name", f"a journey named {name.strip()!r} exists; edit that one", 409)
            saved = save(conn, name, document, description.strip(), _actor(session))
            detail = {"name": saved["name"], "version": saved["version"]}
            audit.record(conn, _actor(session), "journey.create", "journey", str(saved["id"]), detail)
    except JourneyError as exc:
        return _form(request, None, values, {exc.field: exc.message}, _status(exc))
    return redirect(f"/journeys/{saved['id']}?done=created")


@router.get("/journeys/{journey_id}/edit")
def edit_journey(request: Request, session: SignedIn, journey_id: int) -> Response:
    with engine_of(request).connect() as conn:
        current = _journey(conn, journey_id)
    values = {
        "name": current["name"],
        "description": current["description"] or "",
        "definition": _pretty(current["definition"]),
    }
    return _form(request, current, values)


@router.post("/journeys/{journey_id}")
def update_journey(
    request: Request,
    session: Editor,
    journey_id: int,
    description: Annotated[str, Form(max_length=4000)] = "",
    definition: Annotated[str, Form(max_length=500_000)] = "",
) -> Response:
    engine = engine_of(request)
    with engine.connect() as conn:
        current = _journey(conn, journey_id)
    values = {"name": current["name"], "description": description, "definition": definition}
    try:
        document = _document(definition)
        with engine.begin() as conn:
            saved = save(conn, current["name"], document, description.strip(), _actor(session))
            detail = {"name": saved["name"], "version": saved["version"]}
            audit.record(conn, _actor(session), "journey.update", "journey", str(journey_id), detail)
    except JourneyError as exc:
        return _form(request, current, values, {exc.field: exc.message}, _status(exc))
    return redirect(f"/journeys/{journey_id}?done=saved")


# --- One journey ------------------------------------------------------------------------------


def _detail(
    request: Request, journey_id: int, done: str = "", problem: str = "", status: int = 200
) -> Response:
    with engine_of(request).connect() as conn:
        journey = _journey(conn, journey_id)
        history = versions(conn, journey_id)
    definition = journey["definition"]
    # versions saved here name their user as user:<id>; show the e-mail (API and CLI saves as they are)
    emails = {f"user:{u.id}": u.email for u in list_users(engine_of(request))}
    return render(
        request,
        "journey.html",
        {
            "nav": "journeys",
            "j": journey,
            "s": journey["stats"],
            "entry": describe_entry(definition.get("entry", {})),
            "goal": (definition.get("goal") or {}).get("event"),
            "steps": _steps(journey),
            "versions": [
                {**v, "by": emails.get(v["by"], v["by"]), "definition_json": _pretty(v["definition"])}
                for v in history
            ],
            "done": done,
            "problem": problem,
        },
        status,
    )


@router.get("/journeys/{journey_id}")
def show_journey(request: Request, session: SignedIn, journey_id: int, done: str = "") -> Response:
    return _detail(request, journey_id, DONE.get(done, ""))


def _switch(request: Request, session: Session, journey_id: int, status: str, action: str) -> Response:
    try:
        with engine_of(request).begin() as conn:
            _journey(conn, journey_id)
            set_status(conn, journey_id, status)
            audit.record(conn, _actor(session), f"journey.{action}", "journey", str(journey_id))
    except JourneyError as exc:
        problem = f"Not activated: {exc.field}: {exc.message}"
        return _detail(request, journey_id, problem=problem, status=_status(exc))
    return redirect(f"/journeys/{journey_id}?done={action}d")


@router.post("/journeys/{journey_id}/activate")
def activate_journey(request: Request, session: Editor, journey_id: int) -> Response:
    return _switch(request, session, journey_id, "active", "activate")


@router.post("/journeys/{journey_id}/pause")
def pause_journey(request: Request, session: Editor, journey_id: int) -> Response:
    return _switch(request, session, journey_id, "paused", "pause")


@router.post("/journeys/{journey_id}/delete")
def delete_journey(request: Request, session: Editor, journey_id: int) -> Response:
    with engine_of(request).begin() as conn:
        name = _journey(conn, journey_id)["name"]
        delete(conn, journey_id)
        audit.record(conn, _actor(session), "journey.delete", "journey", str(journey_id), {"name": name})
    return redirect("/journeys?done=deleted")
