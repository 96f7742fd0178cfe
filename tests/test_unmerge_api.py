"""The unmerge API in-process, on SQLite and PostgreSQL: reject a link, list, allow again; 400s
naming the field, scopes, audit by ids only, and a probabilistic link's reasons in the history."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.identity.identifiers import Identifier
from opencdp.log.append import LogAppender
from opencdp.match.merges import append_merge
from opencdp.store.schema import audit_log, identity_links
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, log_messages, process, profile_of


def ts(day: int) -> str:
    return f"2026-05-{day:02d}T10:00:00Z"


def _shared_tablet(cdp: OpenCDP) -> str:
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "ann",
                "anonymousId": "tablet",
                "messageId": "t1",
                "timestamp": ts(1),
            },
            {
                "type": "identify",
                "anonymousId": "tablet",
                "traits": {"email": "bob@example.com"},
                "messageId": "t2",
                "timestamp": ts(2),
            },
        ],
    )
    process(cdp.engine)
    return profile_of(cdp.engine, "user_id", "ann")


def _until_applied(client: TestClient, headers: dict[str, str], rejection_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = client.get("/api/identity/rejections", headers=headers).json()["rejections"]
        row = next(r for r in rows if r["id"] == rejection_id)
        if row["applied_at"] is not None:
            return row
        time.sleep(0.05)
    raise AssertionError("the rejection was not applied")


def test_unmerge_a_link_list_and_allow_again(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    pid = _shared_tablet(cdp)
    admin = {"Authorization": f"Bearer {admin_key}"}
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read')[1]}"}
    history = client.get(f"/api/profiles/{pid}/merges", headers=admin).json()
    link = next(
        x
        for x in history["links"]
        if {x["left"]["value"], x["right"]["value"]} == {"tablet", "bob@example.com"}
    )
    assert {link["left"]["value"], link["right"]["value"]} == {"tablet", "bob@example.com"}
    response = client.post(
        f"/api/profiles/{pid}/unmerge", json={"link_id": link["id"], "reason": "shared tablet"}, headers=admin
    )
    assert response.status_code == 202, response.text
    rejection = response.json()
    assert rejection["applied_at"] is None and rejection["profile_id"] == pid and rejection["created"]
    _until_applied(client, read, rejection["id"])
    bob = profile_of(cdp.engine, "email", "bob@example.com")
    assert bob != profile_of(cdp.engine, "user_id", "ann")
    profile = client.get(f"/api/profiles/{bob}", headers=read).json()
    assert [r["reason"] for r in profile["rejections"]] == ["shared tablet"]
    merges = client.get(f"/api/profiles/{bob}/merges", headers=read).json()
    assert merges["rejections"][0]["id"] == rejection["id"]
    assert any(c["rule"] == "rejected" for c in merges["conflicts"])
    # the same pair again: 200, nothing new
    again = client.post(
        f"/api/profiles/{pid}/unmerge",
        json={
            "left": {"type": "email", "value": "BOB@example.com"},
            "right": {"type": "anonymous_id", "value": "tablet"},
        },
        headers=admin,
    )
    assert again.status_code == 400  # bob is no longer in ann's profile: the identifiers name the field
    assert again.json()["errors"][0]["field"] == "left"
    # a read key may list but not change
    assert client.delete(f"/api/identity/rejections/{rejection['id']}", headers=read).status_code == 403
    allowed = client.delete(f"/api/identity/rejections/{rejection['id']}", headers=admin)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["profiles"] == [profile_of(cdp.engine, "user_id", "ann")]
    assert profile_of(cdp.engine, "email", "bob@example.com") == profile_of(cdp.engine, "user_id", "ann")
    assert client.get("/api/identity/rejections", headers=read).json() == {"rejections": []}
    assert client.delete(f"/api/identity/rejections/{rejection['id']}", headers=admin).status_code == 404
    with cdp.engine.connect() as conn:
        entries = conn.execute(sa.select(audit_log).where(audit_log.c.action.like("identity.%"))).all()
    assert {e.action for e in entries} >= {"identity.unmerge", "identity.unmerge_undo", "identity.rejections"}
    assert not any("tablet" in str(e) or "bob" in str(e) for e in entries)


def test_unmerge_input_errors_and_scopes(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    pid = _shared_tablet(cdp)
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "carl",
                "anonymousId": "phone",
                "messageId": "c1",
                "timestamp": ts(3),
            }
        ],
    )
    process(cdp.engine)
    carl = profile_of(cdp.engine, "user_id", "carl")
    with cdp.engine.connect() as conn:
        foreign = conn.execute(
            sa.select(identity_links.c.id).where(identity_links.c.profile_id == carl)
        ).scalar_one()
    admin = {"Authorization": f"Bearer {admin_key}"}
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read')[1]}"}
    url = f"/api/profiles/{pid}/unmerge"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"link_id": 999_999}, "link_id"),
        ({"link_id": foreign}, "link_id"),
        ({"link_id": 1, "reason": "a\x00b"}, "reason"),
        ({"left": {"type": "user_id", "value": "ann"}}, "right"),
        (
            {"left": {"type": "user_id", "value": "ann"}, "right": {"type": "user_id", "value": "carl"}},
            "right",
        ),
        (
            {
                "left": {"type": "user_id", "value": "a\x00n"},
                "right": {"type": "anonymous_id", "value": "tablet"},
            },
            "left.value",
        ),
        (
            {
                "left": {"type": "email", "value": "null"},
                "right": {"type": "anonymous_id", "value": "tablet"},
            },
            "left",
        ),
        ({}, "left"),
        ({"link_id": 0}, "link_id"),
    ]
    for body, field in cases:
        response = client.post(url, json=body, headers=admin)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, (body, response.json())
    assert client.post(url, json={"link_id": foreign}, headers=read).status_code == 403
    assert client.post(url, json={"link_id": foreign}).status_code == 401
    assert (
        client.post("/api/profiles/nobody/unmerge", json={"link_id": foreign}, headers=admin).status_code
        == 404
    )
    assert client.get("/api/identity/rejections", headers=read).status_code == 200
    assert client.get("/api/identity/rejections?type=email", headers=read).status_code == 400
    assert client.delete("/api/identity/rejections/0", headers=admin).status_code == 400


def test_a_probabilistic_link_shows_its_reasons(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    log_messages(
        cdp.engine,
        [
            {
                "type": "identify",
                "userId": "dora",
                "traits": {"name": "Dora"},
                "messageId": "d1",
                "timestamp": ts(1),
            },
            {
                "type": "identify",
                "anonymousId": "web-9",
                "traits": {"name": "Dora"},
                "messageId": "d2",
                "timestamp": ts(2),
            },
        ],
    )
    process(cdp.engine)
    sentence = "name similar (JW 0.94), same date of birth: match probability 0.998"
    with cdp.engine.begin() as conn:
        append_merge(
            conn,
            LogAppender.for_engine(cdp.engine, RULES),
            Identifier("user_id", "dora"),
            Identifier("anonymous_id", "web-9"),
            {"explanation": sentence, "match_probability": 0.998, "model": "people"},
        )
    process(cdp.engine)
    pid = profile_of(cdp.engine, "user_id", "dora")
    assert profile_of(cdp.engine, "anonymous_id", "web-9") == pid
    admin = {"Authorization": f"Bearer {admin_key}"}
    links = client.get(f"/api/profiles/{pid}/merges", headers=admin).json()["links"]
    matched = next(x for x in links if x["rule"] == "probabilistic")
    assert matched["explanation"] == sentence and matched["match_probability"] == 0.998
    response = client.post(f"/api/profiles/{pid}/unmerge", json={"link_id": matched["id"]}, headers=admin)
    assert response.status_code == 202
    _until_applied(client, admin, response.json()["id"])
    assert profile_of(cdp.engine, "anonymous_id", "web-9") != profile_of(cdp.engine, "user_id", "dora")
    # the matching job merging the pair again is refused like any join of a rejected pair
    with cdp.engine.begin() as conn:
        append_merge(
            conn,
            LogAppender.for_engine(cdp.engine, RULES),
            Identifier("user_id", "dora"),
            Identifier("anonymous_id", "web-9"),
            {"explanation": sentence, "match_probability": 0.999},
        )
    process(cdp.engine)
    assert profile_of(cdp.engine, "anonymous_id", "web-9") != profile_of(cdp.engine, "user_id", "dora")
    conflicts = client.get(f"/api/profiles/{pid}/merges", headers=admin).json()["conflicts"]
    assert [c["rule"] for c in conflicts] == ["rejected"]  # one edge, dated by its first event
