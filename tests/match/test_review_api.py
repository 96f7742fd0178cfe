"""The review queue over the admin API, in-process: listing with counts, one pair, decisions, and
the errors (400 naming the field, 401, 403, 404, 409) on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from opencdp.access import audit
from opencdp.access.keys import create_api_key
from opencdp.system import OpenCDP
from tests.identity_helpers import profile_of
from tests.match.review_data import candidate, people


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_list_read_and_accept(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    people(cdp.engine)
    anna = candidate(cdp.engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    bob = candidate(cdp.engine, ("user_id", "u-bob"), ("user_id", "u-carl"), 0.95)
    read = _bearer(create_api_key(cdp.engine, "read")[1])

    listed = client.get("/api/match/candidates", headers=read)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [c["id"] for c in body["candidates"]] == [bob, anna]
    assert body["counts"] == {"pending": 2, "skipped": 0, "accepted": 0, "rejected": 0, "merged": 0}
    assert body["total"] == 2
    paged = client.get("/api/match/candidates?limit=1&offset=1", headers=read).json()
    assert [c["id"] for c in paged["candidates"]] == [anna]

    one = client.get(f"/api/match/candidates/{anna}", headers=read)
    assert one.status_code == 200, one.text
    shown = one.json()
    assert shown["allowed"] == ["accept", "reject", "skip"]
    assert {f["name"]: f["state"] for f in shown["fields"]}["first_name"] == "differs"
    assert shown["candidate"]["comparisons"][0]["field"] == "name"

    refused = client.post(f"/api/match/candidates/{bob}/decision", json={"decision": "accept"},
                          headers=_bearer(admin_key))  # fmt: skip
    assert refused.status_code == 409
    assert "merge protection refuses it" in refused.json()["message"]

    accepted = client.post(
        f"/api/match/candidates/{anna}/decision", json={"decision": "accept"}, headers=_bearer(admin_key)
    )
    assert accepted.status_code == 200, accepted.text
    decided = accepted.json()
    assert decided["status"] == "accepted"
    assert decided["decided_by"].startswith("key:")
    assert decided["event_id"] > 0
    assert decided["next_id"] == bob
    deadline = time.monotonic() + 20  # the server's processor merges them (woken by the decision)
    while profile_of(cdp.engine, "anonymous_id", "anon-1") != profile_of(cdp.engine, "user_id", "u-anna"):
        assert time.monotonic() < deadline, "the accepted pair was not merged"
        time.sleep(0.05)

    again = client.post(
        f"/api/match/candidates/{anna}/decision", json={"decision": "reject"}, headers=_bearer(admin_key)
    )
    assert again.status_code == 409
    by = decided["decided_by"]
    assert again.json()["message"] == f"candidate {anna} is already decided: accepted by {by}"
    rejected = client.post(
        f"/api/match/candidates/{bob}/decision", json={"decision": "reject"}, headers=_bearer(admin_key)
    )
    assert rejected.json()["status"] == "rejected"
    counts = client.get("/api/match/candidates?status=all", headers=read).json()["counts"]
    assert counts == {"pending": 0, "skipped": 0, "accepted": 1, "rejected": 1, "merged": 0}
    actions = [e["action"] for e in audit.entries(cdp.engine, action="match.*")]
    assert actions == ["match.candidates", "match.candidates", "match.candidate", "match.review",
                       "match.review", "match.candidates"]  # fmt: skip


def test_errors_name_the_field_and_the_scope(client: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    people(cdp.engine)
    cid = candidate(cdp.engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    admin, read = _bearer(admin_key), _bearer(create_api_key(cdp.engine, "read")[1])
    url = f"/api/match/candidates/{cid}/decision"

    for body in ({"decision": "merge"}, {}, {"decision": 1}, {"decision": "accept", "extra": 1}):
        bad = client.post(url, json=body, headers=admin)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["errors"][0]["field"] in ("decision", "extra"), bad.text
    merge = client.post(url, json={"decision": "merge"}, headers=admin).json()
    assert merge["errors"][0]["field"] == "decision"
    assert client.post(url, json={"decision": "dismiss"}, headers=admin).status_code == 409
    maybe = client.get("/api/match/candidates?status=maybe", headers=read).json()
    assert maybe["errors"][0]["field"] == "status"
    assert client.get("/api/match/candidates?limit=0", headers=read).status_code == 400
    assert client.get("/api/match/candidates/0", headers=read).status_code == 400
    missing = client.get("/api/match/candidates/424242", headers=read)
    assert (missing.status_code, missing.json()["message"]) == (404, "there is no match candidate 424242")
    assert client.post("/api/match/candidates/424242/decision", json={"decision": "skip"},
                       headers=admin).status_code == 404  # fmt: skip

    assert client.get("/api/match/candidates").status_code == 401
    assert client.get("/api/match/candidates", headers=_bearer("nonsense")).status_code == 401
    assert client.post(url, json={"decision": "accept"}).status_code == 401
    forbidden = client.post(url, json={"decision": "accept"}, headers=read)
    assert forbidden.status_code == 403
    assert forbidden.json()["required_scope"] == "admin"
    metrics = _bearer(create_api_key(cdp.engine, "metrics")[1])
    assert client.get("/api/match/candidates", headers=metrics).status_code == 403
    assert client.post(url, json={"decision": "skip"}, headers=admin).json()["status"] == "skipped"
