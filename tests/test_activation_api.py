"""Destinations, forwarding, audience syncs and deliveries over the admin API, against a real
local HTTP receiver: secrets never come back, errors name the field, scopes are enforced."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.access.keys import create_api_key
from opencdp.store.schema import audit_log
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process
from tests.receivers import Receiver, verify_signature

SECRET = "s3cret-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def auth(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


def _webhook(receiver: Receiver, name: str = "hook", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "config": {"url": receiver.url}, **extra}


def _wait(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_destination_lifecycle_never_shows_the_secret(
    client: TestClient, cdp: OpenCDP, auth: dict[str, str], receiver: Receiver
) -> None:
    texts: list[str] = []

    def call(method: str, url: str, **kwargs: Any) -> Any:
        response = client.request(method, url, headers=auth, **kwargs)
        texts.append(response.text)
        return response

    created = call("POST", "/api/destinations", json=_webhook(receiver, secret=SECRET, rate_per_second=50))
    assert created.status_code == 201, created.text
    view = created.json()
    dest_id = view["id"]
    assert view["has_secret"] is True and view["secret_env"] is None and "secret" not in view
    assert view["config"]["url"] == receiver.url and view["rate_per_second"] == 50
    assert view["health"]["circuit"] == "closed" and view["deliveries"] == {}

    listed = call("GET", "/api/destinations").json()
    assert [(d["id"], d["has_secret"]) for d in listed] == [(dest_id, True)]
    assert call("GET", f"/api/destinations/{dest_id}").json()["name"] == "hook"

    # update without a secret: renamed, new settings, the secret kept
    changed = _webhook(receiver, name="hook 2", max_retry_seconds=3600)
    changed["config"]["headers"] = {"X-Test": "yes"}
    updated = call("PUT", f"/api/destinations/{dest_id}", json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "hook 2" and updated.json()["has_secret"] is True
    assert updated.json()["max_retry_seconds"] == 3600

    # a test send: one signed sample message now, signed with the secret given at creation
    sent = call("POST", f"/api/destinations/{dest_id}/test")
    assert sent.status_code == 200 and sent.json() == {"status": "delivered", "error": None}
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["x-test"] == "yes"
    assert verify_signature(SECRET, receiver.received[0])
    receiver.status = 400
    failed = call("POST", f"/api/destinations/{dest_id}/test").json()
    assert failed["status"] == "failed" and "400" in failed["error"]

    # "" removes the secret
    removed = call("PUT", f"/api/destinations/{dest_id}", json={**changed, "secret": ""})
    assert removed.json()["has_secret"] is False

    deleted = call("DELETE", f"/api/destinations/{dest_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"forwarding_rules": 0, "audience_syncs": 0, "deliveries": 0}
    assert call("GET", "/api/destinations").json() == []

    assert not [t for t in texts if SECRET in t]
    with cdp.engine.connect() as conn:
        entries = conn.execute(sa.select(audit_log.c.action, audit_log.c.detail)).all()
    actions = [e.action for e in entries]
    for action in ("destination.create", "destination.update", "destination.test", "destination.delete"):
        assert action in actions
    assert SECRET not in str(entries)


def test_bad_input_names_the_field(client: TestClient, auth: dict[str, str], receiver: Receiver) -> None:
    def post(url: str, body: Any) -> Any:
        return client.post(url, json=body, headers=auth)

    bad_url = post("/api/destinations", {"name": "x", "kind": "webhook", "config": {"url": "ftp://x"}})
    assert bad_url.status_code == 422
    assert bad_url.json()["errors"][0]["field"] == "config.url"
    assert (
        post("/api/destinations", {**_webhook(receiver), "kind": "carrier pigeon"}).json()["errors"][0][
            "field"
        ]
        == "kind"
    )
    env = post("/api/destinations", _webhook(receiver, secret="env:OPENCDP_SECRET_KEY"))
    assert env.status_code == 422 and env.json()["errors"][0]["field"] == "secret"
    purpose = post("/api/destinations", _webhook(receiver, purpose="no such purpose"))
    assert purpose.status_code == 422 and purpose.json()["errors"][0]["field"] == "purpose"
    # pydantic's own checks: 400, also naming the field
    missing = post("/api/destinations", {"kind": "webhook", "config": {}})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "name"
    rate = post("/api/destinations", _webhook(receiver, rate_per_second=0))
    assert rate.status_code == 400 and rate.json()["errors"][0]["field"] == "rate_per_second"

    first = post("/api/destinations", _webhook(receiver))
    assert first.status_code == 201
    dest_id = first.json()["id"]
    duplicate = post("/api/destinations", _webhook(receiver))
    assert duplicate.status_code == 409 and duplicate.json()["errors"][0]["field"] == "name"
    other = post("/api/destinations", _webhook(receiver, name="other")).json()["id"]
    clash = client.put(f"/api/destinations/{other}", json=_webhook(receiver), headers=auth)
    assert clash.status_code == 409
    kind = client.put(
        f"/api/destinations/{dest_id}", json={**_webhook(receiver), "kind": "smtp"}, headers=auth
    )
    assert kind.status_code == 422 and kind.json()["errors"][0]["field"] == "kind"

    rule = post("/api/forwarding", {"name": "r", "destination_id": dest_id, "filter": {"types": ["nope"]}})
    assert rule.status_code == 422 and rule.json()["errors"][0]["field"].startswith("filter.types")
    post("/api/forwarding", {"name": "r", "destination_id": dest_id})
    assert post("/api/forwarding", {"name": "r", "destination_id": dest_id}).status_code == 409
    nothing = post("/api/deliveries/replay", {})
    assert nothing.status_code == 400 and nothing.json()["errors"][0]["field"] == "ids"
    assert client.get("/api/deliveries?status=lost", headers=auth).json()["errors"][0]["field"] == "status"

    for method, url, body in [
        ("GET", "/api/destinations/999", None),
        ("PUT", "/api/destinations/999", _webhook(receiver, name="z")),
        ("DELETE", "/api/destinations/999", None),
        ("POST", "/api/destinations/999/test", None),
        ("DELETE", "/api/forwarding/999", None),
        ("DELETE", "/api/audience-syncs/999", None),
        ("POST", "/api/forwarding", {"name": "s", "destination_id": 999}),
        ("POST", "/api/audience-syncs", {"segment": "nope", "destination_id": dest_id}),
        ("POST", "/api/deliveries/replay", {"destination_id": 999}),
    ]:
        response = client.request(method, url, json=body, headers=auth)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"] == "not_found"


def test_forwarding_audience_sync_and_dead_letter_replay(
    client: TestClient, cdp: OpenCDP, auth: dict[str, str], receiver: Receiver
) -> None:
    receiver.status = 400  # refused: dead letters at once
    dest_id = client.post("/api/destinations", json=_webhook(receiver), headers=auth).json()["id"]
    rule = client.post(
        "/api/forwarding",
        json={"name": "orders", "destination_id": dest_id, "filter": {"events": ["Order Completed"]}},
        headers=auth,
    )
    assert rule.status_code == 201, rule.text
    assert client.get("/api/forwarding", headers=auth).json() == [rule.json()]
    assert rule.json()["filter"] == {"events": ["Order Completed"]}

    log_messages(
        cdp.engine,
        [
            {"type": "identify", "userId": "ann", "messageId": "m1", "traits": {"country": "DE"}},
            {"type": "track", "userId": "ann", "messageId": "m2", "event": "Order Completed"},
            {"type": "track", "userId": "ann", "messageId": "m3", "event": "Product Viewed"},
        ],
    )
    process(cdp.engine)

    def dead() -> list[dict[str, Any]]:
        page = client.get(f"/api/deliveries?status=dead&destination_id={dest_id}", headers=auth).json()
        return list(page["deliveries"])

    letters = _wait(dead)
    assert [(d["kind"], d["status"]) for d in letters] == [("event", "dead")]
    assert "400" in letters[0]["last_error"]

    receiver.status = 200
    replayed = client.post("/api/deliveries/replay", json={"ids": [letters[0]["id"]]}, headers=auth)
    assert replayed.status_code == 200 and replayed.json() == {"replayed": 1}
    assert _wait(lambda: receiver.idempotency_keys() == [letters[0]["key"]])
    assert _wait(lambda: client.get("/api/deliveries?status=delivered", headers=auth).json()["deliveries"])
    assert client.post("/api/deliveries/replay", json={"all": True}, headers=auth).json() == {"replayed": 0}

    # an audience sync backfills the segment's current members
    segment = {"name": "germans", "criteria": {"trait": "country", "op": "eq", "value": "DE"}}
    assert client.post("/api/segments", json=segment, headers=auth).json()["members"] == 1
    sync = client.post(
        "/api/audience-syncs", json={"segment": "germans", "destination_id": dest_id}, headers=auth
    )
    assert sync.status_code == 201 and sync.json()["backfilled"] == 1
    again = client.post(
        "/api/audience-syncs", json={"segment": "germans", "destination_id": dest_id}, headers=auth
    )
    assert again.status_code == 409
    syncs = client.get("/api/audience-syncs", headers=auth).json()
    assert [(s["id"], s["segment"], s["destination_id"]) for s in syncs] == [
        (sync.json()["id"], "germans", dest_id)
    ]
    assert _wait(lambda: len(receiver.received) == 2)
    assert receiver.bodies()[1]["action"] == "add"

    page = client.get("/api/deliveries?limit=1", headers=auth).json()
    assert len(page["deliveries"]) == 1 and page["next_before_id"] == page["deliveries"][0]["id"]
    older = client.get(f"/api/deliveries?limit=10&before_id={page['next_before_id']}", headers=auth).json()
    assert [d["id"] for d in older["deliveries"]] == [letters[0]["id"]] and older["next_before_id"] is None

    assert client.delete(f"/api/audience-syncs/{sync.json()['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/forwarding/{rule.json()['id']}", headers=auth).status_code == 204
    assert client.get("/api/audience-syncs", headers=auth).json() == []
    assert client.get("/api/forwarding", headers=auth).json() == []
    with cdp.engine.connect() as conn:
        actions = set(conn.execute(sa.select(audit_log.c.action)).scalars())
    assert {
        "forwarding.create",
        "forwarding.delete",
        "audience.sync",
        "audience.unsync",
        "deliveries.replay",
    } <= (actions)


def test_reading_needs_read_and_changing_needs_admin(
    client: TestClient, cdp: OpenCDP, auth: dict[str, str], receiver: Receiver
) -> None:
    dest_id = client.post("/api/destinations", json=_webhook(receiver), headers=auth).json()["id"]
    read = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'read')[1]}"}
    export = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'export')[1]}"}
    metrics = {"Authorization": f"Bearer {create_api_key(cdp.engine, 'metrics')[1]}"}
    reads = [
        "/api/destinations",
        f"/api/destinations/{dest_id}",
        "/api/forwarding",
        "/api/audience-syncs",
        "/api/deliveries",
    ]
    for url in reads:
        assert client.get(url, headers=read).status_code == 200, url
        refused = client.get(url, headers=metrics)
        assert refused.status_code == 403 and refused.json()["required_scope"] == "read"
        assert client.get(url).status_code == 401
    changes = [
        ("POST", "/api/destinations", _webhook(receiver, name="new")),
        ("PUT", f"/api/destinations/{dest_id}", _webhook(receiver)),
        ("DELETE", f"/api/destinations/{dest_id}", None),
        ("POST", f"/api/destinations/{dest_id}/test", None),
        ("POST", "/api/forwarding", {"name": "r", "destination_id": dest_id}),
        ("DELETE", "/api/forwarding/1", None),
        ("POST", "/api/audience-syncs", {"segment": "s", "destination_id": dest_id}),
        ("DELETE", "/api/audience-syncs/1", None),
        ("POST", "/api/deliveries/replay", {"all": True}),
    ]
    for key in (read, export):
        for method, url, body in changes:
            refused = client.request(method, url, json=body, headers=key)
            assert refused.status_code == 403, (method, url)
            assert refused.json()["required_scope"] == "admin"
    assert not receiver.received
    assert [d["name"] for d in client.get("/api/destinations", headers=auth).json()] == ["hook"]
