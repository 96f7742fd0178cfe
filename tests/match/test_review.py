"""The review queue on SQLite and PostgreSQL: listing in queue order, a pair with both current
profiles side by side, and the decisions (accept merges through the log, reject and skip do not)."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from opencdp.access import audit
from opencdp.identity.graph import MATCH_SOURCE
from opencdp.match import review
from opencdp.profiles.reader import merge_history
from opencdp.store.schema import events, match_candidates, sources
from opencdp.system import OpenCDP
from tests.identity_helpers import process, profile_of
from tests.match.review_data import candidate, people


@pytest.fixture
def engine(system: OpenCDP) -> sa.Engine:
    people(system.engine)
    return system.engine


def test_queue_order_pending_first_most_probable_first(engine: sa.Engine) -> None:
    low = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.81)
    high = candidate(engine, ("user_id", "u-bob"), ("user_id", "u-carl"), 0.97)
    skipped = candidate(engine, ("user_id", "u-bob"), ("anonymous_id", "anon-1"), 0.99, status="skipped")
    candidate(engine, ("user_id", "u-anna"), ("user_id", "u-bob"), 0.999, status="merged")

    page = review.list_candidates(engine, "pending")
    assert [c["id"] for c in page["candidates"]] == [high, low]
    assert page["total"] == 2
    assert page["counts"] == {"pending": 2, "skipped": 1, "accepted": 0, "rejected": 0, "merged": 1}
    queue = review.list_candidates(engine, "queue")
    assert [c["id"] for c in queue["candidates"]] == [high, low, skipped]
    assert queue["total"] == 3
    second = review.list_candidates(engine, "queue", limit=1, offset=1)
    assert [c["id"] for c in second["candidates"]] == [low]
    assert review.list_candidates(engine, "all")["total"] == 4
    assert review.queue_front(engine) == high
    with pytest.raises(review.InvalidDecision, match="status must be one of"):
        review.list_candidates(engine, "maybe")


def test_pair_shows_both_current_profiles_and_what_differs(engine: sa.Engine) -> None:
    cid = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    found = review.pair(engine, cid)
    assert found["same_profile"] is False
    assert found["allowed"] == ["accept", "reject", "skip"]
    assert found["left"]["identifier"] == {"type": "anonymous_id", "value": "anon-1"}
    assert found["left"]["profile_id"] == profile_of(engine, "anonymous_id", "anon-1")
    assert found["right"]["profile_id"] == profile_of(engine, "user_id", "u-anna")
    fields = {(f["kind"], f["name"]): f for f in found["fields"]}
    assert fields[("trait", "first_name")] | {} == {
        "name": "first_name", "kind": "trait", "left": "Ana", "right": "Anna", "state": "differs",
    }  # fmt: skip
    assert fields[("trait", "last_name")]["state"] == "same"
    assert fields[("trait", "email")]["state"] == "right_only"
    assert fields[("identifier", "user_id")] | {} == {
        "name": "user_id", "kind": "identifier", "left": None, "right": ["u-anna"], "state": "right_only",
    }  # fmt: skip
    assert fields[("activity", "events")]["left"] == 1
    assert fields[("activity", "events")]["right"] == 2
    assert found["candidate"]["explanation"].startswith("name similar")
    assert found["warning"] is None


def test_accept_appends_the_merge_event_and_the_processor_merges(engine: sa.Engine) -> None:
    cid = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    decided = review.decide(engine, cid, "accept", "user:7")
    assert decided["status"] == "accepted"
    assert decided["decided_by"] == "user:7"
    assert decided["decided_at"] is not None
    with engine.connect() as conn:
        event = conn.execute(
            sa.select(events.c.event, events.c.payload, sources.c.name)
            .join(sources, sources.c.id == events.c.source_id)
            .where(events.c.id == decided["event_id"])
        ).one()
    assert (event.event, event.name) == ("Identity Matched", MATCH_SOURCE)
    assert event.payload["properties"]["decided_by"] == "review:user:7"
    assert event.payload["properties"]["candidate_id"] == cid

    process(engine)
    survivor = profile_of(engine, "user_id", "u-anna")
    assert profile_of(engine, "anonymous_id", "anon-1") == survivor
    rules = {link["rule"] for link in merge_history(engine, survivor)["links"]}
    assert "probabilistic" in rules
    entries = audit.entries(engine, action="match.review")
    assert [(e["actor"], e["target_type"], e["target_id"], e["detail"]) for e in entries] == [
        ("user:7", "match_candidate", str(cid), {"decision": "accept", "event_id": decided["event_id"]})
    ]
    # decided once: a second decision says so, whatever it is
    for decision in ("accept", "reject", "skip"):
        with pytest.raises(review.ReviewError, match=f"{cid} is already decided: accepted by user:7"):
            review.decide(engine, cid, decision, "user:8")
    # now one profile: the pair view says so, and a new pending row for it can only be dismissed
    again = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9, model="other")
    shown = review.pair(engine, again)
    assert shown["same_profile"] is True
    assert shown["allowed"] == ["dismiss"]
    with pytest.raises(review.ReviewError, match="already belong to one profile"):
        review.decide(engine, again, "accept", "cli")
    assert review.decide(engine, again, "dismiss", "cli")["status"] == "merged"


def test_reject_and_skip_change_only_the_status(engine: sa.Engine) -> None:
    rejected = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    skipped = candidate(engine, ("user_id", "u-bob"), ("anonymous_id", "anon-1"), 0.95)
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    decided = review.decide(engine, skipped, "skip", "key:3")
    assert decided | {"next_id": None} == review.candidate_out(_row(engine, skipped)) | {"next_id": None}
    assert (decided["status"], decided["event_id"], decided["next_id"]) == ("skipped", None, rejected)
    assert review.list_candidates(engine, "queue")["candidates"][0]["id"] == rejected  # skipped: behind
    assert review.pair(engine, skipped)["allowed"] == ["accept", "reject", "skip"]  # still reviewable
    assert review.decide(engine, rejected, "reject", "key:3")["status"] == "rejected"
    assert review.decide(engine, skipped, "reject", "key:3")["status"] == "rejected"
    process(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == before
    assert profile_of(engine, "user_id", "u-anna") != profile_of(engine, "anonymous_id", "anon-1")


def _row(engine: sa.Engine, cid: int) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.select(match_candidates).where(match_candidates.c.id == cid)).one()


def test_refusals_are_clear(engine: sa.Engine) -> None:
    users = candidate(engine, ("user_id", "u-bob"), ("user_id", "u-carl"), 0.9)
    assert review.pair(engine, users)["warning"] == (
        "merge protection refuses it: together they have 2 user_id (at most 1)"
    )
    with pytest.raises(review.ReviewError, match="merge protection refuses it"):
        review.decide(engine, users, "accept", "cli")
    with pytest.raises(review.InvalidDecision, match="decision must be one of accept, reject, skip, dismiss"):
        review.decide(engine, users, "merge", "cli")
    with pytest.raises(review.CandidateNotFound, match="there is no match candidate 999999"):
        review.decide(engine, 999_999, "accept", "cli")
    with pytest.raises(review.ReviewError, match="dismiss is for pairs that are already one profile"):
        review.decide(engine, users, "dismiss", "cli")
    gone = candidate(engine, ("user_id", "u-bob"), ("email", "nobody@example.com"), 0.9)
    shown = review.pair(engine, gone)
    assert shown["missing"] == ["email:nobody@example.com"]
    assert shown["allowed"] == ["reject", "skip"]
    with pytest.raises(review.ReviewError, match="no longer belongs to any profile"):
        review.decide(engine, gone, "accept", "cli")
    with engine.connect() as conn:
        statuses = conn.execute(sa.select(match_candidates.c.status)).scalars().all()
    assert set(statuses) == {"pending"}  # nothing changed by a refusal


def test_neighbours_in_the_queue(engine: sa.Engine) -> None:
    a = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.95)
    b = candidate(engine, ("user_id", "u-bob"), ("anonymous_id", "anon-1"), 0.9)
    c = candidate(engine, ("user_id", "u-carl"), ("anonymous_id", "anon-1"), 0.9)
    d = candidate(engine, ("user_id", "u-dora"), ("user_id", "u-bob"), 0.99, status="skipped")
    assert (review.pair(engine, a)["previous_id"], review.pair(engine, a)["next_id"]) == (None, b)
    assert (review.pair(engine, b)["previous_id"], review.pair(engine, b)["next_id"]) == (a, c)
    assert (review.pair(engine, c)["previous_id"], review.pair(engine, c)["next_id"]) == (b, d)
    assert (review.pair(engine, d)["previous_id"], review.pair(engine, d)["next_id"]) == (c, None)
    assert review.decide(engine, b, "reject", "cli")["next_id"] == c


def test_two_reviewers_at_once_decide_once(engine: sa.Engine) -> None:
    """Two people accept the same pair at the same moment: one merge event, one clear refusal."""
    cid = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(actor: str) -> None:
        start.wait()
        try:
            outcomes.append(review.decide(engine, cid, "accept", actor)["status"])
        except review.ReviewError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=accept, args=(f"user:{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes)[0] == "accepted"
    assert re.fullmatch(rf"candidate {cid} is already decided: accepted by user:[12]", sorted(outcomes)[1])
    with engine.connect() as conn:
        merges = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.event == "Identity Matched")
        ).scalar_one()
    assert merges == 1


def test_comparisons_missing_keys_are_filled(engine: sa.Engine) -> None:
    cid = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9,
                    comparisons=[{"field": "name"}, "odd"])  # fmt: skip
    assert review.pair(engine, cid)["candidate"]["comparisons"] == [
        {"field": "name", "label": None, "level": None, "bayes_factor": None},
        {"field": None, "label": "odd", "level": None, "bayes_factor": None},
    ]
