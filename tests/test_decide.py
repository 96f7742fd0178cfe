"""The decision engine on a real log, processed, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.personalise.decide import (
    Decider,
    DecideRequestError,
    in_holdout,
    parse_decide_request,
)
from opencdp.personalise.experiences import EXPERIENCE_VIEWED, parse_experience
from opencdp.segments import store as segment_store
from opencdp.store.schema import events, experiences
from opencdp.system import OpenCDP

NOW = datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def add_experience(engine: sa.Engine, document: dict[str, Any], enabled: bool = True) -> int:
    definition = parse_experience(document)
    with engine.begin() as conn:
        return int(
            conn.execute(
                experiences.insert().values(
                    name=definition.name,
                    placement=definition.placement,
                    definition=document,
                    enabled=enabled,
                    version=1,
                    created_at=NOW,
                    updated_at=NOW,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )


def send(client: TestClient, write_key: str, batch: list[dict[str, Any]]) -> None:
    response = client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert response.status_code == 200, response.text


def _shopper(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    start = NOW - timedelta(minutes=10)
    batch: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"plan": "gold"},
            "timestamp": _iso(NOW - timedelta(days=3)),
        },
        {
            "type": "track",
            "userId": "u1",
            "event": "Order Completed",
            "properties": {"total": 80},
            "timestamp": _iso(NOW - timedelta(days=3)),
        },
    ]
    for i in range(3):
        batch.append(
            {
                "type": "track",
                "anonymousId": "a1",
                "event": "Product Viewed",
                "properties": {"category": "shoes"},
                "timestamp": _iso(start + timedelta(minutes=i)),
                "context": {"campaign": {"source": "newsletter", "medium": "email"}},
            }
        )
    send(client, write_key, batch)
    cdp.processor.run_until_caught_up()


BOOTS = {
    "name": "boots hero",
    "placement": "home-hero",
    "holdout_percent": 0,
    "variants": [
        {
            "name": "boots",
            "audience": {
                "and": [
                    {"segment": "gold"},
                    {
                        "session_event": "Product Viewed",
                        "where": [{"property": "category", "op": "eq", "value": "shoes"}],
                        "count": {"op": "gte", "value": 3},
                    },
                    {"session": "source", "op": "eq", "value": "newsletter"},
                    {"context": "cart.value", "op": "gt", "value": 100},
                    {"event": "Order Completed", "within_days": 30},
                ]
            },
            "content": {"html": "<h2>Boots</h2>"},
        },
        {"name": "generic", "content": {"html": "<h2>Sale</h2>"}},
    ],
    "fallback": {"html": "<h2>Welcome</h2>"},
}


def test_history_session_and_context_decide(cdp: OpenCDP, client: TestClient, write_key: str) -> None:
    _shopper(client, cdp, write_key)
    segment_store.save(cdp.engine, "gold", {"trait": "plan", "op": "eq", "value": "gold"})
    add_experience(cdp.engine, BOOTS)
    decider = Decider(cdp.engine, cdp.settings)
    body = {"userId": "u1", "placements": ["home-hero", "nowhere"], "context": {"cart": {"value": 150}}}
    decision = decider.decide(parse_decide_request(body), now=NOW)
    out = decision.as_json()
    assert out["decisions"]["home-hero"] == {
        "experience": "boots hero",
        "variant": "boots",
        "content": {"html": "<h2>Boots</h2>"},
        "holdout": False,
        "reason": "matched",
    }
    assert out["decisions"]["nowhere"]["reason"] == "no_experience"
    assert "traits" not in out
    # a small cart: the next variant
    small = decider.decide(parse_decide_request({**body, "context": {"cart": {"value": 50}}}), now=NOW)
    assert small.as_json()["decisions"]["home-hero"]["variant"] == "generic"
    # the session ended 30 minutes after its last event
    later = decider.decide(parse_decide_request(body), now=NOW + timedelta(hours=1))
    assert later.as_json()["decisions"]["home-hero"]["variant"] == "generic"
    # an unknown visitor gets the fallback; a secret caller may ask for traits
    unknown = decider.decide(
        parse_decide_request({"anonymousId": "new", "placements": ["home-hero"]}), now=NOW
    )
    assert unknown.as_json()["decisions"]["home-hero"]["reason"] == "unknown_visitor"
    assert unknown.as_json()["decisions"]["home-hero"]["content"] == {"html": "<h2>Welcome</h2>"}
    revealed = decider.decide(
        parse_decide_request({**body, "traits": ["plan", "none"]}), now=NOW, reveal_traits=True
    )
    assert revealed.as_json()["traits"] == {"plan": "gold", "none": None}


def test_unprocessed_events_count_in_the_session(system: OpenCDP) -> None:
    """Events in the log that the processor has not reached yet are part of the live session."""
    add_experience(
        system.engine,
        {
            "name": "struggle",
            "placement": "help",
            "holdout_percent": 0,
            "variants": [
                {
                    "name": "chat",
                    "audience": {"session": "struggling", "op": "eq", "value": True},
                    "content": {"html": "Chat with us"},
                }
            ],
        },
    )
    request = parse_decide_request({"anonymousId": "v1", "placements": ["help"]})
    decider = Decider(system.engine, system.settings)
    assert decider.decide(request, now=NOW).as_json()["decisions"]["help"]["reason"] == "no_match"
    rows = [_form_row(system, "v1", "email", NOW - timedelta(seconds=20 - i)) for i in range(2)]
    system.appender.append_committed(system.engine, rows)
    assert decider.decide(request, now=NOW).as_json()["decisions"]["help"]["variant"] == "chat"
    # a minute later the signal has passed
    later = decider.decide(request, now=NOW + timedelta(seconds=75))
    assert later.as_json()["decisions"]["help"]["reason"] == "no_match"


def _form_row(cdp: OpenCDP, anonymous_id: str, field: str, ts: datetime) -> dict[str, Any]:
    from opencdp.collect.messages import Envelope, normalise

    with cdp.engine.begin() as conn:
        from opencdp.privacy.consent_events import system_source_id

        source_id = system_source_id(conn, "test-forms")
    message = {
        "type": "track",
        "event": "Form Field Errored",
        "anonymousId": anonymous_id,
        "messageId": f"m-{field}-{ts.timestamp()}",
        "properties": {"form_id": "signup", "field": field, "message": "Please enter an e-mail"},
        "timestamp": _iso(ts),
    }
    return normalise(message, Envelope(NOW), source_id, cdp.limits)


def test_exposures_are_logged_and_processed(cdp: OpenCDP, client: TestClient, write_key: str) -> None:
    _shopper(client, cdp, write_key)
    add_experience(cdp.engine, {**BOOTS, "variants": [BOOTS["variants"][1]], "holdout_percent": 50})
    decision = Decider(cdp.engine, cdp.settings).decide(
        parse_decide_request({"userId": "u1", "anonymousId": "a1", "placements": ["home-hero"]}), now=NOW
    )
    from opencdp.privacy.consent_events import system_source_id

    with cdp.engine.begin() as conn:
        source_id = system_source_id(conn, "opencdp-decide")
    rows = decision.exposure_rows(source_id, NOW)
    cdp.writer.submit(rows).result(timeout=10)
    cdp.processor.run_until_caught_up()
    with cdp.engine.connect() as conn:
        stored = conn.execute(sa.select(events.c.payload).where(events.c.event == EXPERIENCE_VIEWED)).all()
    assert len(stored) == 1
    payload = stored[0].payload
    props = payload["properties"]
    assert props["experience"] == "boots hero" and props["variant"] == "generic"
    assert props["holdout"] == (props["reason"] == "holdout")
    assert payload["userId"] == "u1"


def test_bad_requests_name_the_field() -> None:
    for body, path in [
        ({"placements": ["a"]}, "anonymousId"),
        ({"anonymousId": "x", "placements": []}, "placements"),
        ({"anonymousId": "x", "placements": ["no spaces"]}, "placements"),
        ({"anonymousId": "x", "placements": ["a"], "extra": 1}, "extra"),
    ]:
        try:
            parse_decide_request(body)
        except DecideRequestError as exc:
            assert exc.problems[0]["path"] == path, exc.problems
        else:
            raise AssertionError(f"{body} was accepted")


def test_holdout_is_stable_and_close_to_its_share() -> None:
    units = [f"profile-{i}" for i in range(100_000)]
    for percent in (5, 10, 33):
        held = [u for u in units if in_holdout(7, u, percent)]
        assert abs(len(held) / len(units) - percent / 100) < 0.01
        assert held == [u for u in units if in_holdout(7, u, percent)]
