"""The review queue of probabilistic matching over the admin API: list candidate pairs with the
counts per status, one pair with both current profiles side by side, and a decision on a pair.
Reading needs `read` (like reading profiles), deciding `admin` (it merges profiles). Every read and
decision is audited with ids only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, ReadKey
from opencdp.api.errors import ApiError
from opencdp.match import review, runner
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api/match", tags=["matching"])

CandidateId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The candidate pair's id")]
LISTING_HELP = "pending (default), skipped, accepted, rejected, merged; queue: pending then skipped; all"
Listing = Literal["queue", "all", "pending", "skipped", "accepted", "rejected", "merged"]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "reject", "skip", "dismiss"] = Field(
        ...,
        description="accept: merge the two profiles (an `Identity Matched` event in the log); "
        "reject: never propose this pair again (unmerges nothing); skip: leave it for later; "
        "dismiss: the pair is already one profile (the only decision then)",
    )


def _problem(error: review.ReviewError, field: str | None = None) -> ApiError:
    kinds = {400: "invalid", 404: "not_found", 409: "conflict"}
    errors = [{"field": field, "problem": str(error)}] if field else None
    return ApiError(error.status, kinds.get(error.status, "conflict"), str(error), errors)


@router.get("/candidates", summary="Candidate pairs of a status, most probable first, with counts per status")
def list_candidates(
    request: Request,
    key: ReadKey,
    status: Annotated[Listing, Query(description=LISTING_HELP)] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    page = review.list_candidates(cdp.engine, status, limit, offset)
    audit(request, key, "match.candidates", detail={"status": status, "count": len(page["candidates"])})
    return page


@router.get(
    "/candidates/{candidate_id}",
    summary="One pair: both current profiles side by side, which fields differ, what may be decided",
)
def get_candidate(request: Request, key: ReadKey, candidate_id: CandidateId) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        found = review.pair(cdp.engine, candidate_id, cdp.processor.rules)
    except review.ReviewError as error:
        raise _problem(error) from None
    profiles = [side["profile_id"] for side in (found["left"], found["right"]) if side["profile_id"]]
    audit(request, key, "match.candidate", "match_candidate", str(candidate_id), {"profiles": profiles})
    return found


@router.post(
    "/candidates/{candidate_id}/decision",
    summary="Accept (merge), reject or skip a pair; dismiss one that is already one profile",
)
def decide(request: Request, key: AdminKey, candidate_id: CandidateId, body: DecisionIn) -> dict[str, Any]:
    """409 when the pair is already decided or its state does not allow the decision (the message
    says why); accepting wakes the processor, which merges the profiles within a moment."""
    cdp: OpenCDP = request.app.state.cdp
    try:
        decided = review.decide(
            cdp.engine, candidate_id, body.decision, key.actor, cdp.processor.rules, cdp.appender
        )
    except review.ReviewError as error:
        raise _problem(error, "decision" if error.status == 400 else None) from None
    if decided["event_id"] is not None and cdp.loop is not None:
        cdp.loop.notify()
    return decided


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        runner.DEFAULT_MODEL, min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_-]*$",
        description="The matching job (its stored configuration; the defaults for people if new)",
    )  # fmt: skip
    retrain: bool = Field(False, description="Estimate the model again even if one is stored")


@router.post(
    "/run",
    status_code=202,
    summary="Start a matching run in the background: merges above the auto-merge threshold, queues the rest",
)
def start_run(request: Request, key: AdminKey, body: RunIn) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    started = runner.run_in_background(cdp.engine, body.model, body.retrain, cdp.processor.rules)
    if not started:
        raise ApiError(409, "conflict", f"a run of {body.model!r} is already in progress")
    audit(request, key, "match.run", detail={"model": body.model, "retrain": body.retrain})
    return {"model": body.model, "status": "started"}
