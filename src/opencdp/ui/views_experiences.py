"""Experiences: the list (placement, strategy, holdout, enabled, version, and the decisions logged in
the last 7 days per variant), create and edit the JSON definition with each problem named by its
path beside it, enable, disable and delete.

Everything goes through `opencdp.personalise.store` like the API and the CLI; the store writes the
audit log in the same transaction, with the signed-in user as actor. Admins and marketers change,
analysts look.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response

from opencdp.api.decide import invalidate_decisions
from opencdp.personalise import store
from opencdp.personalise.experiences import EXPERIENCE_VIEWED, ExperienceError
from opencdp.personalise.store import ExperienceNotSaved
from opencdp.store.dialect import json_bool, json_number, json_text
from opencdp.store.schema import profile_events
from opencdp.ui.sessions import Session
from opencdp.ui.web import Editor, NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
#: The window of the decision counts on the list.
DAYS = 7
DONE = {
    "created": "Experience saved, disabled: enable it to let it decide.",
    "saved": "Experience saved as a new version.",
    "enabled": "Experience enabled: it decides from now on.",
    "disabled": "Experience disabled: it no longer decides.",
    "deleted": "Experience deleted (its logged decisions stay in the event log).",
}
#: The starting point of a new experience (docs/personalisation.md)
EXAMPLE: dict[str, Any] = {
    "name": "winter boots hero",
    "placement": "home-hero",
    "priority": 10,
    "strategy": "first_match",
    "variants": [
        {
            "name": "boots",
            "audience": {
                "session_event": "Product Viewed",
                "where": [{"property": "category", "op": "eq", "value": "shoes"}],
                "count": {"op": "gte", "value": 3},
            },
            "content": {"html": "<h2>Boots for the snow</h2>"},
        },
        {"name": "everyone else", "content": {"html": "<h2>Winter sale</h2>"}},
    ],
    "holdout_percent": 10,
    "default": {},
    "fallback": {"html": "<h2>Welcome</h2>"},
    "goal": "Order Completed",
}
EXAMPLE_NOTES = (
    ("placement", "the marked element of the page it decides (data-opencdp-placement)"),
    ("priority", "among enabled experiences of a placement, the highest whose audience matches decides"),
    ("strategy", "first_match (in order), weighted (A/B/n by weight) or highest_score (by score)"),
    ("variants", "boots for who viewed ≥ 3 shoes in this session, the sale for everyone else"),
    ("holdout_percent", "10 % of profiles, stable per profile, get default instead: the uplift baseline"),
    ("fallback", "what unknown visitors see (no profile yet)"),
    ("goal", "the conversion event of the uplift report"),
)
AUDIENCES = (
    ('{"segment": "big spenders"}', "members of a saved segment"),
    ('{"trait": "country", "op": "eq", "value": "DE"}', "the profile's traits (and computed:, predicted:)"),
    (
        '{"session_event": "Product Viewed", "where": […], "count": {"op": "gte", "value": 3}}',
        "events of this session",
    ),
    ('{"session": "source", "op": "eq", "value": "newsletter"}', "facts of this session (struggling, …)"),
    ('{"context": "cart.value", "op": "gt", "value": 100}', "the live page: cart, UTM, device, locale"),
    ('{"context": "holiday", "op": "eq", "value": true}', "a public holiday today in the visitor's country"),
    ('{"and": […]}, {"or": […]}, {"not": …}', "combined"),
)


def _actor(session: Session) -> str:
    return f"user:{session.user.id}"


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _status(exc: ExperienceNotSaved) -> int:
    return exc.status if exc.status in (400, 404, 409) else 400


def _experience(conn: sa.Connection, experience_id: int) -> dict[str, Any]:
    try:
        return store.get(conn, experience_id)
    except ExperienceNotSaved:
        raise NotFound("There is no experience with this id (it may have been deleted).") from None


# --- Decisions logged ---------------------------------------------------------------------------


def decisions_logged(
    conn: sa.Connection, days: int = DAYS, now: datetime | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Per experience id: `Experience Viewed` events of the last `days` days per variant, each
    with how many were shown and how many were held out (they saw the default)."""
    since = (now or datetime.now(UTC)) - timedelta(days=days)
    properties = profile_events.c.properties
    inner = (
        sa.select(
            json_number(properties, "experience_id").label("experience_id"),
            json_text(properties, "variant").label("variant"),
            json_bool(properties, "holdout").label("holdout"),
        )
        .where(profile_events.c.name == EXPERIENCE_VIEWED, profile_events.c.ts >= since)
        .subquery()
    )
    out: dict[int, dict[str | None, dict[str, Any]]] = {}
    for experience_id, variant, holdout, n in conn.execute(
        sa.select(inner.c.experience_id, inner.c.variant, inner.c.holdout, sa.func.count())
        .where(inner.c.experience_id.is_not(None))
        .group_by(inner.c.experience_id, inner.c.variant, inner.c.holdout)
    ):
        counts = out.setdefault(int(experience_id), {}).setdefault(
            variant, {"variant": variant, "shown": 0, "held_out": 0}
        )
        counts["held_out" if holdout else "shown"] += n
    return {
        eid: sorted(by_variant.values(), key=lambda c: (c["variant"] is None, c["variant"] or ""))
        for eid, by_variant in out.items()
    }


# --- The list -----------------------------------------------------------------------------------


@router.get("/experiences")
def list_experiences(request: Request, session: SignedIn, done: str = "") -> Response:
    with engine_of(request).connect() as conn:
        found = store.list_all(conn)
        logged = decisions_logged(conn)
    rows = []
    for e in found:
        variants = logged.get(e["id"], [])
        order = {name: i for i, name in enumerate(e["variants"])}
        variants.sort(key=lambda c: order.get(c["variant"], len(order)))
        rows.append({**e, "logged": variants, "total": sum(c["shown"] + c["held_out"] for c in variants)})
    context = {"nav": "experiences", "experiences": rows, "days": DAYS, "done": DONE.get(done, "")}
    return render(request, "experiences.html", context)


# --- Create and edit ----------------------------------------------------------------------------


def _form(
    request: Request,
    experience: dict[str, Any] | None,
    definition: str,
    problems: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "experience_form.html",
        {
            "nav": "experiences",
            "experience": experience,
            "definition": definition,
            "problems": problems or [],
            "example": _pretty(EXAMPLE),
            "example_notes": EXAMPLE_NOTES,
            "audiences": AUDIENCES,
        },
        status,
    )


def _document(text: str) -> Any:
    try:
        return orjson.loads(text or "null")
    except orjson.JSONDecodeError as exc:
        raise ExperienceError([{"path": "", "problem": f"not valid JSON ({exc})"}]) from None


def _problems(exc: ExperienceError | ExperienceNotSaved) -> list[dict[str, str]]:
    if isinstance(exc, ExperienceError):
        return exc.problems
    return [{"path": exc.field, "problem": exc.message}]


@router.get("/experiences/new")
def new_experience(request: Request, session: SignedIn) -> Response:
    return _form(request, None, _pretty(EXAMPLE))


@router.post("/experiences")
def create_experience(
    request: Request, session: Editor, definition: Annotated[str, Form(max_length=500_000)] = ""
) -> Response:
    try:
        document = _document(definition)
        with engine_of(request).begin() as conn:
            saved = store.create(conn, document, actor=_actor(session))
    except (ExperienceError, ExperienceNotSaved) as exc:
        status = _status(exc) if isinstance(exc, ExperienceNotSaved) else 400
        return _form(request, None, definition, _problems(exc), status)
    invalidate_decisions(request)
    return redirect(f"/experiences?done=created#experience-{saved['id']}")


@router.get("/experiences/{experience_id}/edit")
def edit_experience(request: Request, session: SignedIn, experience_id: int) -> Response:
    with engine_of(request).connect() as conn:
        current = _experience(conn, experience_id)
    return _form(request, current, _pretty(current["definition"]))


@router.post("/experiences/{experience_id}")
def update_experience(
    request: Request,
    session: Editor,
    experience_id: int,
    definition: Annotated[str, Form(max_length=500_000)] = "",
) -> Response:
    engine = engine_of(request)
    with engine.connect() as conn:
        current = _experience(conn, experience_id)
    try:
        document = _document(definition)
        with engine.begin() as conn:
            store.update(conn, experience_id, document, actor=_actor(session))
    except (ExperienceError, ExperienceNotSaved) as exc:
        status = _status(exc) if isinstance(exc, ExperienceNotSaved) else 400
        return _form(request, current, definition, _problems(exc), status)
    invalidate_decisions(request)
    return redirect(f"/experiences?done=saved#experience-{experience_id}")


# --- Enable, disable, delete --------------------------------------------------------------------


def _switch(request: Request, session: Session, experience_id: int, enabled: bool) -> Response:
    with engine_of(request).begin() as conn:
        _experience(conn, experience_id)
        store.set_enabled(conn, experience_id, enabled, actor=_actor(session))
    invalidate_decisions(request)
    done = "enabled" if enabled else "disabled"
    return redirect(f"/experiences?done={done}#experience-{experience_id}")


@router.post("/experiences/{experience_id}/enable")
def enable_experience(request: Request, session: Editor, experience_id: int) -> Response:
    return _switch(request, session, experience_id, True)


@router.post("/experiences/{experience_id}/disable")
def disable_experience(request: Request, session: Editor, experience_id: int) -> Response:
    return _switch(request, session, experience_id, False)


@router.post("/experiences/{experience_id}/delete")
def delete_experience(request: Request, session: Editor, experience_id: int) -> Response:
    with engine_of(request).begin() as conn:
        _experience(conn, experience_id)
        store.delete(conn, experience_id, actor=_actor(session))
    invalidate_decisions(request)
    return redirect("/experiences?done=deleted")
