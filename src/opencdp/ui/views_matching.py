"""The Matching page: the review queue of probabilistic matching. Counts per status, the last run
of each model, and one pair at a time with both current profiles side by side (fields that differ
highlighted), the comparisons that scored it and Accept / Reject / Skip, also from the keyboard
(a, r, s; j and k for the next and previous pair; match_review.js).

Who may decide: admins and marketers, as for every other change in the dashboard
(`users.EDITORS`); analysts see the queue and the pairs but not the buttons, and a decision they
send anyway is refused (403). Viewing a pair is audited like the 360° view (ids only), and traits
are shown as the 360° view shows them.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request, Response

from opencdp.access import audit
from opencdp.match import review, runner
from opencdp.store.schema import match_models
from opencdp.system import OpenCDP
from opencdp.ui.web import BadRequest, Editor, NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
QUEUE_SHOWN = 15
DONE_WORDS = {
    "accept": "accepted: the two profiles merge within seconds",
    "reject": "rejected: it will not be proposed again",
    "skip": "skipped: it waits behind the pending pairs",
    "dismiss": "dismissed: already one profile",
}


def _runs(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(match_models.c.name, match_models.c.last_run_at, match_models.c.last_summary)
            .where(match_models.c.last_run_at.is_not(None))
            .order_by(match_models.c.last_run_at.desc())
        ).all()
    return [
        {
            "name": r.name,
            "at": r.last_run_at,
            "summary": r.last_summary if isinstance(r.last_summary, dict) else {},
        }
        for r in rows
    ]


def _page(
    request: Request, session: Any, at: int | None, done: str = "", problem: str = "", status: int = 200
) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    engine = cdp.engine
    current = at or review.queue_front(engine)
    found = None
    if current is not None:
        try:
            found = review.pair(engine, current, cdp.processor.rules)
        except review.CandidateNotFound:
            raise NotFound(f"There is no match candidate {current}.") from None
        profiles = [s["profile_id"] for s in (found["left"], found["right"]) if s["profile_id"]]
        audit.record(
            engine, f"user:{session.user.id}", "match.candidate", "match_candidate", str(current),
            {"profiles": profiles},
        )  # fmt: skip
    queue = review.list_candidates(engine, "queue", QUEUE_SHOWN, 0)
    return render(
        request,
        "match_review.html",
        {
            "nav": "matching",
            "pair": found,
            "queue": queue,
            "counts": queue["counts"],
            "runs": _runs(engine),
            "done": done,
            "problem": problem,
            "can_decide": session.user.can_edit,
            "running": runner.running(),
        },
        status,
    )


@router.get("/matching")
def matching(
    request: Request,
    session: SignedIn,
    at: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    done: Annotated[str, Query(max_length=20)] = "",
    decided: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    started: Annotated[int, Query(ge=0, le=1)] = 0,
) -> Response:
    message = f"Pair {decided} {DONE_WORDS[done]}." if done in DONE_WORDS and decided else ""
    if started:
        message = "Matching started: merges show as they are processed, new pairs appear in the queue."
    return _page(request, session, at, done=message)


@router.post("/matching/{candidate_id}/decision")
def decide(
    request: Request,
    session: Editor,
    candidate_id: int,
    decision: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    cdp: OpenCDP = request.app.state.cdp
    if decision not in review.DECISIONS:
        raise BadRequest(f"Choose one of: {', '.join(review.DECISIONS)}.")
    try:
        decided = review.decide(
            engine_of(request), candidate_id, decision, f"user:{session.user.id}", cdp.processor.rules,
            cdp.appender,
        )  # fmt: skip
    except review.CandidateNotFound:
        raise NotFound(f"There is no match candidate {candidate_id}.") from None
    except review.ReviewError as error:
        return _page(request, session, candidate_id, problem=f"{error}.", status=409)
    if decided["event_id"] is not None and cdp.loop is not None:
        cdp.loop.notify()  # the processor merges them now rather than at its next look
    params: dict[str, Any] = {"done": decision, "decided": candidate_id}
    if decided["next_id"]:
        params["at"] = decided["next_id"]
    return redirect("/matching?" + urlencode(params))


@router.post("/matching/run")
def run_matching(request: Request, session: Editor) -> Response:
    """Start a run of the default job in the background (merging above the auto-merge threshold)."""
    cdp: OpenCDP = request.app.state.cdp
    if runner.run_in_background(cdp.engine, runner.DEFAULT_MODEL, rules=cdp.processor.rules):
        actor = f"user:{session.user.id}"
        audit.record(engine_of(request), actor, "match.run", "match_model", runner.DEFAULT_MODEL)
    return redirect("/matching?started=1")
