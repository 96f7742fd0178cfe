"""Admins see who can sign in and can switch accounts off and on (creating users and setting
passwords stays on the command line, so no password is ever typed into a form for someone else)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from opencdp.access import audit
from opencdp.ui import users
from opencdp.ui.sessions import Session
from opencdp.ui.web import (
    BadRequest,
    Forbidden,
    SignedIn,
    UIRoute,
    checked_session,
    engine_of,
    redirect,
    render,
)

router = APIRouter(route_class=UIRoute, include_in_schema=False)
DONE = {"disabled": "User disabled; their sessions have ended.", "enabled": "User enabled."}


def _admin(session: Session) -> Session:
    if session.user.role != "admin":
        raise Forbidden(f"Only admins manage users; your role is {session.user.role}.")
    return session


def admin_session(session: SignedIn) -> Session:
    return _admin(session)


def admin_checked(session: Annotated[Session, Depends(checked_session)]) -> Session:
    return _admin(session)


@router.get("/users")
def list_users(
    request: Request, session: Annotated[Session, Depends(admin_session)], done: str = ""
) -> Response:
    return render(
        request,
        "users.html",
        {"nav": "users", "users": users.list_users(engine_of(request)), "done": DONE.get(done, "")},
    )


@router.post("/users/{user_id}/{action}")
def switch(
    request: Request, session: Annotated[Session, Depends(admin_checked)], user_id: int, action: str
) -> Response:
    if action not in ("disable", "enable"):
        raise BadRequest("Users can be disabled or enabled here.")
    if user_id == session.user.id:
        raise BadRequest("You cannot disable yourself; ask another admin.")
    engine = engine_of(request)
    found = next((u for u in users.list_users(engine) if u.id == user_id), None)
    if found is None:
        raise BadRequest("There is no such user.")
    users.set_disabled(engine, found.email, action == "disable")
    audit.record(engine, f"user:{session.user.id}", f"user.{action}", "user", str(user_id))
    return redirect(f"/users?done={action}d")
