"""Channel preference on hand-built event sequences, on SQLite and PostgreSQL: every counter, the
"ignored the last N" count, smoothing, ties, visits as sessions, and nothing after `at` counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from opencdp.predict import runner
from opencdp.predict.channels import JOBS, channel_config, preferred
from opencdp.predict.model import TooThin
from opencdp.store.schema import profiles
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process
from tests.predict.helpers import scores_by_user

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
_counter = iter(range(1_000_000))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def track(user: str, event: str, minutes: float, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": f"m{next(_counter)}",
        "timestamp": at(minutes).isoformat(),
        "properties": properties,
    }


def call(kind: str, user: str, minutes: float) -> dict[str, Any]:
    return {
        "type": kind,
        "userId": user,
        "name": "Home",
        "messageId": f"m{next(_counter)}",
        "timestamp": at(minutes).isoformat(),
    }


def emails(user: str, sent: int, opened: set[int], start: float = 0, gap: float = 60) -> list[dict[str, Any]]:
    """`sent` e-mails `gap` minutes apart, the ones numbered in `opened` (from 1) opened 10 min later."""
    out = []
    for number in range(1, sent + 1):
        out.append(track(user, "Email Delivered", start + (number - 1) * gap))
        if number in opened:
            out.append(track(user, "Email Opened", start + (number - 1) * gap + 10))
    return out


def _score(system: OpenCDP, moment: datetime, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return scores_by_user(system, "channels", moment, **options)


def test_counters_responses_and_ignored_last(system: OpenCDP) -> None:
    alice = [
        *emails("alice", 6, {2, 4}),
        track("alice", "Email Link Clicked", 70),  # a click on e-mail 2: a response, not a second answer
        track("alice", "SMS Delivered", 30),
        track("alice", "SMS Replied", 35),
    ]
    both_reported = [  # a sender that reports every e-mail twice: Sent, then Delivered
        m
        for n in range(4)
        for m in (track("bob", "Email Sent", n * 60), track("bob", "Email Delivered", n * 60 + 1))
    ]
    log_messages(system.engine, [*alice, *both_reported, track("bob", "Email Opened", 70)])
    process(system.engine)
    scores, quality = _score(system, at(24 * 60), prior_mean=0.2)

    email = scores["alice"]["channels"]["email"]
    assert email == {
        "received": 6,
        "responses": 3,  # open, click, open
        "responded": 2,  # e-mails 2 and 4
        "response_rate": round(2 / 6, 4),
        "last_response_at": "2026-05-01T12:10:00Z",  # the open of e-mail 4 (sent at 3 h)
        "ignored_last": 2,  # e-mails 5 and 6
    }
    assert scores["alice"]["email_ignored_last"] == 2
    assert scores["alice"]["channels"]["sms"] == {
        "received": 1,
        "responses": 1,
        "responded": 1,
        "response_rate": 1.0,
        "last_response_at": "2026-05-01T09:35:00Z",
        "ignored_last": 0,
    }
    # sms 1/1 → (1 + 2) / (1 + 10) = 0.27; e-mail 2/6 → (2 + 2) / (6 + 10) = 0.25
    assert scores["alice"]["preferred_channel"] == "sms"
    assert set(scores["alice"]["channels"]) == {"email", "sms"}  # only channels with data

    bob = scores["bob"]["channels"]["email"]
    assert (bob["received"], bob["responded"], bob["ignored_last"]) == (4, 1, 2)  # counted once, not 8
    assert (
        quality["profiles"] == 2 and quality["preferred"]["email"] == 1 and quality["preferred"]["sms"] == 1
    )
    assert quality["received"] == {"email": 10, "sms": 1}


def test_smoothing_ties_and_no_preference(system: OpenCDP) -> None:
    carol = [
        *emails("carol", 60, set(range(1, 41))),
        track("carol", "SMS Delivered", 5),
        track("carol", "SMS Replied", 6),
    ]
    dave = [*emails("dave", 2, {1}), track("dave", "SMS Delivered", 200), track("dave", "SMS Replied", 201)]
    dave += [track("dave", "SMS Delivered", 300)]
    erin = emails("erin", 3, set())
    log_messages(system.engine, [*carol, *dave, *erin, track("frank", "Email Opened", 0)])
    process(system.engine)
    scores, quality = _score(system, at(10_000), prior_mean=0.2)

    assert scores["carol"]["channels"]["sms"]["response_rate"] == 1.0
    assert scores["carol"]["preferred_channel"] == "email"  # 40/60 beats 1/1 once smoothed
    assert scores["dave"]["preferred_channel"] is None  # 1/2 on both: a tie is no preference
    assert scores["erin"]["preferred_channel"] is None  # never answered anywhere
    assert scores["erin"]["email_ignored_last"] == 3
    assert scores["erin"]["channels"]["email"]["last_response_at"] is None
    # an open with no delivered e-mail before it: a response that answers no message
    assert scores["frank"]["channels"]["email"] == {
        "received": 0,
        "responses": 1,
        "responded": 0,
        "response_rate": None,
        "last_response_at": "2026-05-01T09:00:00Z",
        "ignored_last": 0,
    }
    assert scores["frank"]["preferred_channel"] is None and scores["frank"]["email_ignored_last"] == 0
    assert quality["no_preference"] == 3
    raw = {"sms": {"received": 1, "responded": 1}, "email": {"received": 60, "responded": 40}}
    assert preferred(raw, {"prior_mean": 0.2, "prior_strength": 0, "min_responded": 1}) == "sms"  # unsmoothed
    assert preferred(raw, {"prior_mean": 0.2, "prior_strength": 10, "min_responded": 1}) == "email"


def test_web_and_app_visits_are_sessions_and_nothing_after_at_counts(system: OpenCDP) -> None:
    gina = [
        call("page", "gina", 0),
        call("page", "gina", 5),
        call("page", "gina", 50),  # more than 30 minutes after the last: a second visit
        call("screen", "gina", 100),
        track("gina", "Application Opened", 101),
        *emails("gina", 3, {1}, start=200),
    ]
    log_messages(system.engine, gina)
    process(system.engine)
    cutoff = at(330)  # after e-mail 3 was sent (320), before anything below
    before, first_quality = _score(system, cutoff)
    assert before["gina"]["channels"]["web"] == {
        "received": 0,
        "responses": 2,
        "responded": 0,
        "response_rate": None,
        "last_response_at": "2026-05-01T09:50:00Z",
        "ignored_last": 0,
    }
    assert before["gina"]["channels"]["app"]["responses"] == 1
    assert before["gina"]["channels"]["email"]["ignored_last"] == 2
    assert before["gina"]["preferred_channel"] == "email"  # web and app have no messages to answer

    later = [
        track("gina", "Email Opened", 335),
        call("page", "gina", 400),
        *emails("gina", 2, set(), start=500),
    ]
    log_messages(system.engine, [*later, track("hank", "Email Delivered", 331)])
    process(system.engine)
    after, quality = _score(system, cutoff)
    assert after == before and quality == first_quality
    now, _ = _score(system, at(10_000))
    assert now["gina"]["channels"]["email"]["ignored_last"] == 2  # the two sent after the open
    assert now["gina"]["channels"]["email"]["responded"] == 2
    assert now["gina"]["channels"]["web"]["responses"] == 3


def test_options_override_the_mapping(system: OpenCDP) -> None:
    log_messages(
        system.engine,
        [track("ivy", "Text Sent", 0), track("ivy", "Text Answered", 1), track("ivy", "SMS Delivered", 2)],
    )
    process(system.engine)
    options = {"channels": {"sms": {"received": ["Text Sent"], "response": ["Text Answered"]}, "push": None}}
    scores, _ = _score(system, at(60), **options)
    assert scores["ivy"]["channels"]["sms"]["received"] == 1  # SMS Delivered no longer maps
    assert scores["ivy"]["preferred_channel"] == "sms"
    fitted = JOBS["channels"].fit(system.engine, at(60), options)
    assert "push" not in fitted.params["channels"] and fitted.features[0] == "email"
    assert fitted.params["channels"]["sms"]["received"] == ["Text Sent"]
    with pytest.raises(ValueError, match="mapped twice"):
        channel_config({"channels": {"sms": {"received": ["Email Opened"]}}})
    with pytest.raises(ValueError, match="keys among"):
        channel_config({"channels": {"sms": {"sent": ["x"]}}})


def test_no_channel_events_is_too_thin(system: OpenCDP) -> None:
    log_messages(system.engine, [track("jo", "Order Completed", 0)])
    process(system.engine)
    with pytest.raises(TooThin, match="no channel events"):
        JOBS["channels"].fit(system.engine, at(60), {})


def test_the_stored_model_scores_the_same(system: OpenCDP) -> None:
    """Through the runner: params stored as JSON (key order lost on JSONB) give the same traits."""
    log_messages(
        system.engine, [*emails("kim", 3, {1}), call("page", "kim", 0), track("kim", "SMS Delivered", 1)]
    )
    process(system.engine)
    direct, _ = _score(system, at(600))
    runner.fit(system.engine, "channels", at(600))
    assert runner.score(system.engine, "channels", at(600)) == 1
    with system.engine.connect() as conn:
        stored = conn.execute(
            sa.select(profiles.c.predicted).where(profiles.c.predicted.is_not(None))
        ).scalar_one()
    assert {k: stored[k] for k in ("preferred_channel", "channels", "email_ignored_last")} == direct["kim"]
    assert list(direct["kim"]["channels"]) == ["email", "sms", "web"]
    with pytest.raises(ValueError, match="prior_mean"):
        JOBS["channels"].fit(system.engine, at(600), {"prior_mean": 2})
