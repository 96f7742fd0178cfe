"""Journeys over the admin API, in-process on both engines: drafts, versions, activation with the
real processor and runner in the background, stats, a profile's journeys, errors naming the
field, scopes and the audit log."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.store.schema import audit_log
from opencdp.system import OpenCDP
from tests.load import wait_until_processed

WELCOME = {
    "entry": {"event": "Signed Up"},
    "steps": [{"id": "a day", "wait": {"days": 1}}, {"id": "tag", "tag": {"add": "welcomed"}}],
}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _wait(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _track(client: TestClient, write_key: str, **message: Any) -> None:
    response = client.post("/v1/track", json={"event": "Signed Up", **message}, headers=_basic(write_key))
    assert response.status_code == 200, response.text


def test_journey_lifecycle(client: TestClient, cdp: OpenCDP, admin_key: str, write_key: str) -> None:
    auth = _bearer(admin_key)
    created = client.post(
        "/api/journeys", json={"name": "welcome", "description": "hi", "definition": WELCOME}, headers=auth
    )
    assert created.status_code == 201, created.text
    journey = created.json()
    jid = journey["id"]
    assert (journey["status"], journey["version"], journey["description"]) == ("draft", 1, "hi")
    assert journey["stats"]["entered"] == 0 and journey["stats"]["conversion_rate"] is None
    duplicate = client.post("/api/journeys", json={"name": " welcome ", "definition": WELCOME}, headers=auth)
    assert duplicate.status_code == 409 and duplicate.json()["errors"][0]["field"] == "name"
    assert [j["name"] for j in client.get("/api/journeys", headers=auth).json()] == ["welcome"]

    # a draft enters no one (and activating it lets in only what is logged from then on)
    _track(client, write_key, userId="early")
    lookup_early = {"type": "user_id", "value": "early"}
    assert _wait(lambda: client.get("/api/profiles/lookup", params=lookup_early, headers=auth).is_success)
    activated = client.post(f"/api/journeys/{jid}/activate", headers=auth)
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    _track(client, write_key, userId="u1")

    def waiting() -> dict[str, Any] | None:
        stats: dict[str, Any] = client.get(f"/api/journeys/{jid}", headers=auth).json()["stats"]
        return stats if stats["steps"].get("a day", {}).get("waiting") else None

    # the processor enters u1, the runner starts the wait (and points at the step after it)
    assert _wait(waiting), client.get(f"/api/journeys/{jid}", headers=auth).text
    wait_until_processed(cdp.engine)
    stats = client.get(f"/api/journeys/{jid}", headers=auth).json()["stats"]
    assert (stats["entered"], stats["active"], stats["completed"]) == (1, 1, 0)
    assert stats["steps"] == {"a day": {"waiting": 1, "now_here": 1}}

    lookup = client.get("/api/profiles/lookup", params={"type": "user_id", "value": "u1"}, headers=auth)
    profile_id = lookup.json()["id"]
    mine = client.get(f"/api/profiles/{profile_id}/journeys", headers=auth)
    assert mine.status_code == 200, mine.text
    assert mine.json()["profile_id"] == profile_id
    [where] = mine.json()["journeys"]
    assert (where["journey"], where["journey_id"], where["status"], where["step"]) == (
        "welcome",
        jid,
        "active",
        "a day",
    )
    assert where["next_step"] == "tag"
    assert where["next_at"] is not None and where["outcome"] is None
    assert [(h["step"], h["action"]) for h in where["history"]] == [(None, "entered"), ("a day", "waiting")]
    early = client.get("/api/profiles/lookup", params=lookup_early, headers=auth)
    assert client.get(f"/api/profiles/{early.json()['id']}/journeys", headers=auth).json()["journeys"] == []

    # a new version: the description stays unless given, the name cannot change here
    second = {**WELCOME, "steps": [*WELCOME["steps"], {"id": "then", "wait": {"days": 2}}]}
    updated = client.put(f"/api/journeys/{jid}", json={"definition": second}, headers=auth)
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["description"]) == (2, "hi")
    assert updated.json()["status"] == "active" and updated.json()["stats"]["active"] == 1
    rename = client.put(f"/api/journeys/{jid}", json={"name": "other", "definition": second}, headers=auth)
    assert rename.status_code == 400 and rename.json()["errors"][0]["field"] == "name"
    versions = client.get(f"/api/journeys/{jid}/versions", headers=auth).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["definition"]["steps"][2]["id"] == "then"
    assert versions[0]["by"].startswith("key:")

    paused = client.post(f"/api/journeys/{jid}/pause", headers=auth)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"

    assert client.delete(f"/api/journeys/{jid}", headers=auth).status_code == 204
    for method, url in [
        ("GET", f"/api/journeys/{jid}"),
        ("GET", f"/api/journeys/{jid}/versions"),
        ("PUT", f"/api/journeys/{jid}"),
        ("POST", f"/api/journeys/{jid}/activate"),
        ("POST", f"/api/journeys/{jid}/pause"),
        ("DELETE", f"/api/journeys/{jid}"),
    ]:
        body = {"definition": WELCOME} if method == "PUT" else None
        gone = client.request(method, url, json=body, headers=auth)
        assert gone.status_code == 404, (method, url, gone.text)
        assert gone.json()["errors"][0]["field"] == "journey"
    assert client.get(f"/api/profiles/{profile_id}/journeys", headers=auth).json()["journeys"] == []

    with cdp.engine.connect() as conn:
        entries = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.target_id, audit_log.c.detail).where(
                audit_log.c.action.like("journey.%") | (audit_log.c.action == "profile.journeys")
            )
        ).all()
    actions = [e.action for e in entries]
    for action in (
        "journey.create",
        "journey.activate",
        "journey.update",
        "journey.pause",
        "journey.delete",
        "profile.journeys",
    ):
        assert action in actions
    assert "u1" not in str(entries) and "Signed Up" not in str(entries)
    assert ("profile.journeys", profile_id, {"count": 1}) in [tuple(e) for e in entries]


def test_errors_name_the_field(client: TestClient, admin_key: str) -> None:
    auth = _bearer(admin_key)

    def post(body: Any) -> Any:
        return client.post("/api/journeys", json=body, headers=auth)

    nowhere = {"entry": {"event": "X"}, "steps": [{"id": "a", "send": {"destination": "nowhere"}}]}
    bad = post({"name": "j", "definition": nowhere})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "definition.steps.0.send.destination"
    wait = post({"name": "j", "definition": {"entry": {"event": "X"}, "steps": [{"id": "a", "wait": {}}]}})
    assert wait.status_code == 422 and wait.json()["errors"][0]["field"] == "definition.steps.0.wait"
    segment = post(
        {"name": "j", "definition": {"entry": {"segment": "none"}, "steps": [{"id": "a", "exit": True}]}}
    )
    assert segment.status_code == 422 and segment.json()["errors"][0]["field"] == "definition.entry.segment"
    assert post({"name": "   ", "definition": WELCOME}).json()["errors"][0]["field"] == "name"
    # the request's shape: 400, naming the field, as everywhere
    missing = post({"name": "j"})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "definition"
    listed = post({"name": "j", "definition": [1]})
    assert listed.status_code == 400 and listed.json()["errors"][0]["field"] == "definition"
    assert client.get("/api/journeys", headers=auth).json() == []

    jid = post({"name": "j", "definition": WELCOME}).json()["id"]
    change = client.put(f"/api/journeys/{jid}", json={"definition": nowhere}, headers=auth)
    assert change.status_code == 422
    assert client.get(f"/api/journeys/{jid}", headers=auth).json()["version"] == 1
    assert client.get("/api/journeys/0", headers=auth).status_code == 400
    unknown = client.get("/api/profiles/nobody/journeys", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_a_read_key_reads_and_cannot_change(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    jid = client.post(
        "/api/journeys", json={"name": "j", "definition": WELCOME}, headers=_bearer(admin_key)
    ).json()["id"]
    read = _bearer(create_api_key(cdp.engine, "read")[1])
    assert client.get("/api/journeys", headers=read).status_code == 200
    assert client.get(f"/api/journeys/{jid}", headers=read).status_code == 200
    assert client.get(f"/api/journeys/{jid}/versions", headers=read).status_code == 200
    for method, url, body in [
        ("POST", "/api/journeys", {"name": "k", "definition": WELCOME}),
        ("PUT", f"/api/journeys/{jid}", {"definition": WELCOME}),
        ("POST", f"/api/journeys/{jid}/activate", None),
        ("POST", f"/api/journeys/{jid}/pause", None),
        ("DELETE", f"/api/journeys/{jid}", None),
    ]:
        refused = client.request(method, url, json=body, headers=read)
        assert refused.status_code == 403, (method, url, refused.text)
    after = client.get(f"/api/journeys/{jid}", headers=read).json()
    assert (after["status"], after["version"]) == ("draft", 1)
    assert client.get("/api/journeys").status_code == 401


def test_a_merged_profile_keeps_its_journeys(client: TestClient, admin_key: str, write_key: str) -> None:
    """Entered while anonymous, then merged into a known customer: the survivor's view shows it."""
    auth = _bearer(admin_key)

    def lookup(kind: str, value: str) -> Any:
        return client.get("/api/profiles/lookup", params={"type": kind, "value": value}, headers=auth)

    jid = client.post("/api/journeys", json={"name": "welcome", "definition": WELCOME}, headers=auth).json()[
        "id"
    ]
    client.post(f"/api/journeys/{jid}/activate", headers=auth)
    client.post("/v1/identify", json={"userId": "u9", "traits": {"plan": "pro"}}, headers=_basic(write_key))
    assert _wait(lambda: lookup("user_id", "u9").is_success)
    _track(client, write_key, anonymousId="a1")
    assert _wait(lambda: lookup("anonymous_id", "a1").is_success)
    anonymous = lookup("anonymous_id", "a1").json()["id"]
    assert _wait(lambda: client.get(f"/api/profiles/{anonymous}/journeys", headers=auth).json()["journeys"])

    client.post("/v1/identify", json={"userId": "u9", "anonymousId": "a1"}, headers=_basic(write_key))
    assert _wait(lambda: lookup("user_id", "u9").json()["merged_ids"])
    survivor = lookup("user_id", "u9").json()["id"]
    for asked in {anonymous, survivor}:
        view = client.get(f"/api/profiles/{asked}/journeys", headers=auth).json()
        assert view["profile_id"] == survivor
        assert [j["journey"] for j in view["journeys"]] == ["welcome"]
