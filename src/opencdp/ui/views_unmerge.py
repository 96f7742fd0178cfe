"""Undoing a merge from the 360° view: an admin rejects a link of the merge history ("Unmerge")
or allows a rejected pair again. Both are forms with the session's CSRF token; the page asks
before sending (data-confirm)."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request, Response

from opencdp.access import audit
from opencdp.profiles.reader import ProfileNotFound
from opencdp.profiles.unmerge import MAX_REASON, UnmergeError, get_rejection, reject
from opencdp.store.schema import identity_rejections
from opencdp.store.schema import users as ui_users
from opencdp.system import OpenCDP
from opencdp.ui.sessions import Session
from opencdp.ui.views_users import admin_checked
from opencdp.ui.web import BadRequest, NotFound, UIRoute, redirect

router = APIRouter(route_class=UIRoute, include_in_schema=False)
Admin = Annotated[Session, Depends(admin_checked)]
#: how long the form waits for the processor to apply a rejection before showing the page
WAIT_SECONDS = 5.0


def _wait_applied(cdp: OpenCDP, rejection_id: int) -> bool:
    """Wake the processor and wait (briefly) until it split the profile, so the page shows it."""
    if cdp.loop is not None:
        cdp.loop.notify()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with cdp.engine.connect() as conn:
            applied = conn.execute(
                sa.select(identity_rejections.c.applied_at).where(identity_rejections.c.id == rejection_id)
            ).first()
        if applied is None or applied.applied_at is not None:
            return True
        time.sleep(0.05)
    return False


@router.post("/profiles/{profile_id}/unmerge")
def unmerge(
    request: Request,
    session: Admin,
    profile_id: str,
    link_id: Annotated[int, Form(ge=1, le=2**63 - 1)],
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    actor = f"user:{session.user.id}"
    try:
        out = reject(cdp.engine, profile_id, link_id=link_id, reason=reason.strip() or None, created_by=actor)
    except ProfileNotFound:
        raise NotFound("There is no profile with this id.") from None
    except UnmergeError as exc:
        raise BadRequest(f"{exc.message[0].upper()}{exc.message[1:]}.") from None
    audit.record(
        cdp.engine, actor, "identity.unmerge", "profile", out["profile_id"], {"rejection": out["id"]}
    )
    done = "unmerged" if _wait_applied(cdp, out["id"]) else "unmerge_waiting"
    return redirect(f"/profiles/{quote(out['profile_id'], safe='')}?done={done}#merges")


@router.post("/profiles/{profile_id}/rejections/{rejection_id}/allow")
def allow_again(request: Request, session: Admin, profile_id: str, rejection_id: int) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    with cdp.engine.connect() as conn:
        found = get_rejection(conn, rejection_id)
    if found is None or cdp.processor.allow_again(rejection_id) is None:
        raise NotFound("There is no such rejection (it may have been allowed again already).")
    audit.record(
        cdp.engine, f"user:{session.user.id}", "identity.unmerge_undo", "rejection", str(rejection_id)
    )
    return redirect(f"/profiles/{quote(profile_id, safe='')}?done=allowed#merges")


def rejected_by(conn: sa.Connection, rejections: list[dict[str, Any]]) -> dict[str, str]:
    """Who rejected each pair, readable: a dashboard user's e-mail, an API key, or the CLI."""
    names: dict[str, str] = {}
    user_ids = {
        int(r["created_by"].split(":", 1)[1])
        for r in rejections
        if (r["created_by"] or "").startswith("user:") and r["created_by"].split(":", 1)[1].isdigit()
    }
    if user_ids:
        for row in conn.execute(
            sa.select(ui_users.c.id, ui_users.c.email).where(ui_users.c.id.in_(user_ids))
        ):
            names[f"user:{row.id}"] = row.email
    for r in rejections:
        who = r["created_by"] or "unknown"
        names.setdefault(who, {"cli": "the command line"}.get(who, who.replace("key:", "API key ")))
    return names
