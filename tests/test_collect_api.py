"""The Segment HTTP Tracking API, driven in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from opencdp.access.keys import set_source_enabled
from opencdp.log.reader import EventQuery, count_events, read_events
from opencdp.system import OpenCDP


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def stored(cdp: OpenCDP) -> list[dict[str, Any]]:
    return read_events(cdp.engine, EventQuery(limit=1000))


CALLS = {
    "identify": {"userId": "u1", "traits": {"email": "Ann@Example.com", "plan": {"tier": "gold"}}},
    "track": {
        "anonymousId": "a1",
        "event": "Order Completed",
        "properties": {"revenue": 12.5, "items": [1, 2]},
    },
    "page": {"anonymousId": "a1", "name": "Home", "properties": {"url": "https://shop.example/"}},
    "screen": {"userId": "u1", "name": "Cart"},
    "group": {"userId": "u1", "groupId": "acme", "traits": {"employees": 40}},
    "alias": {"userId": "u1", "previousId": "a1"},
}


@pytest.mark.parametrize("call_type", sorted(CALLS))
def test_every_call_type_is_stored_whole(
    client: TestClient, cdp: OpenCDP, write_key: str, call_type: str
) -> None:
    message = {
        **CALLS[call_type],
        "context": {"ip": "1.2.3.4", "library": {"name": "x"}},
        "integrations": {"All": False},
        "custom_field": {"kept": True},
    }
    response = client.post(f"/v1/{call_type}", json=message, headers=basic(write_key))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    [row] = stored(cdp)
    assert row["type"] == call_type
    assert row["source"] == "web"
    payload = row["payload"]
    for key, value in message.items():
        assert payload[key] == value
    assert payload["type"] == call_type
    uuid.UUID(row["message_id"])  # generated when missing
    assert payload["messageId"] == row["message_id"]
    expected_name = message.get("event") or message.get("name")
    assert row["event"] == expected_name


def test_write_key_in_body_and_never_stored(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    response = client.post("/v1/track", json={"writeKey": write_key, "userId": "u", "event": "E"})
    assert response.status_code == 200
    [row] = stored(cdp)
    assert "writeKey" not in row["payload"]
    assert write_key not in orjson.dumps(row, default=str).decode()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"wk_nope:").decode()},
        {"Authorization": "Bearer x"},
        {"Authorization": "Basic !!!notbase64"},
    ],
)
def test_missing_or_unknown_key_is_401(client: TestClient, cdp: OpenCDP, headers: dict[str, str]) -> None:
    response = client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert count_events(cdp.engine) == 0


def test_disabled_source_is_401(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    assert (
        client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(write_key)).status_code
        == 200
    )
    set_source_enabled(cdp.engine, "web", False)
    response = client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic(write_key))
    assert response.status_code == 401
    assert "disabled" in response.json()["message"]
    assert count_events(cdp.engine) == 1


def test_gzip_batch(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    body = {"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(50)]}
    response = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={**basic(write_key), "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert count_events(cdp.engine) == 50


def test_import_is_an_alias_of_batch(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    body = {"batch": [{"type": "identify", "userId": "u1", "traits": {"a": 1}}]}
    assert client.post("/v1/import", json=body, headers=basic(write_key)).status_code == 200
    assert count_events(cdp.engine) == 1


def test_retries_are_stored_once(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    batch = {
        "batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(10)]
    }
    for _ in range(3):
        assert client.post("/v1/batch", json=batch, headers=basic(write_key)).status_code == 200
    # the same id twice in one batch, and again as a single call
    dup = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": "m0"}] * 2}
    assert client.post("/v1/batch", json=dup, headers=basic(write_key)).status_code == 200
    assert client.post("/v1/track", json=dup["batch"][0], headers=basic(write_key)).status_code == 200
    rows = stored(cdp)
    assert sorted(r["message_id"] for r in rows) == sorted(f"m{i}" for i in range(10))


def test_same_message_id_in_two_sources_is_two_events(
    client: TestClient, cdp: OpenCDP, write_key: str
) -> None:
    from opencdp.access.keys import create_source

    other = create_source(cdp.engine, "app")[1]
    message = {"userId": "u", "event": "E", "messageId": "same"}
    assert client.post("/v1/track", json=message, headers=basic(write_key)).status_code == 200
    assert client.post("/v1/track", json=message, headers=basic(other)).status_code == 200
    assert sorted(r["source"] for r in stored(cdp)) == ["app", "web"]


def test_clock_skew_is_corrected(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    # The client's clock is 1 hour fast: it says it sent at 13:00:10 an event from 13:00:00.
    body = {
        "sentAt": "2026-03-01T13:00:10Z",
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "timestamp": "2026-03-01T13:00:00Z"},
            {"type": "track", "userId": "u", "event": "NoTime"},
            {
                "type": "track",
                "userId": "u",
                "event": "OwnSentAt",
                "timestamp": "2026-03-01T13:00:00+01:00",
                "sentAt": "2026-03-01T12:00:30Z",
            },
        ],
    }
    before = datetime.now(UTC)
    assert client.post("/v1/batch", json=body, headers=basic(write_key)).status_code == 200
    after = datetime.now(UTC)
    skewed, no_time, own = stored(cdp)
    assert before <= skewed["received_at"] <= after
    assert skewed["original_timestamp"] == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert skewed["sent_at"] == datetime(2026, 3, 1, 13, 0, 10, tzinfo=UTC)
    assert skewed["timestamp"] == skewed["received_at"] - timedelta(seconds=10)
    assert no_time["timestamp"] == no_time["received_at"]
    assert no_time["original_timestamp"] is None
    assert own["timestamp"] == own["received_at"] - timedelta(seconds=30)
    assert own["payload"]["originalTimestamp"].startswith("2026-03-01T12:00:00")


def test_timestamp_without_sent_at_is_kept(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    message = {"userId": "u", "event": "E", "timestamp": "2025-12-24T18:00:00.123+01:00"}
    assert client.post("/v1/track", json=message, headers=basic(write_key)).status_code == 200
    [row] = stored(cdp)
    assert row["timestamp"] == datetime(2025, 12, 24, 17, 0, 0, 123000, tzinfo=UTC)


def test_numeric_ids_become_strings(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    assert client.post("/v1/identify", json={"userId": 42}, headers=basic(write_key)).status_code == 200
    [row] = stored(cdp)
    assert row["user_id"] == "42"
    assert row["payload"]["userId"] == "42"


BAD_SINGLE: list[tuple[str, Any, str]] = [
    ("track", {"event": "E"}, "userId"),
    ("track", {"userId": "", "anonymousId": "", "event": "E"}, "userId"),
    ("track", {"userId": "u"}, "event"),
    ("track", {"userId": "u", "event": "  "}, "event"),
    ("track", {"userId": "u", "event": 5}, "event"),
    ("track", {"userId": ["u"], "event": "E"}, "userId"),
    ("track", {"userId": True, "event": "E"}, "userId"),
    ("track", {"userId": "u", "event": "E", "properties": [1, 2]}, "properties"),
    ("identify", {"userId": "u", "traits": "gold"}, "traits"),
    ("track", {"userId": "u", "event": "E", "context": 3}, "context"),
    ("track", {"userId": "u", "event": "E", "timestamp": "yesterday"}, "timestamp"),
    ("track", {"userId": "u", "event": "E", "timestamp": 1700000000}, "timestamp"),
    ("track", {"userId": "u", "event": "E", "sentAt": "nope"}, "sentAt"),
    ("track", {"userId": "u", "event": "E", "timestamp": "0473-12-29T12:26:17Z"}, "timestamp"),
    (
        "track",
        {"userId": "u", "event": "E", "timestamp": "9999-12-31T00:00:00Z", "sentAt": "1970-01-01T00:00:00Z"},
        "timestamp",
    ),
    (
        "track",
        {"userId": "u", "event": "E", "timestamp": "2199-01-01T00:00:00Z", "sentAt": "1901-01-01T00:00:00Z"},
        "sentAt",
    ),
    ("track", {"userId": "u" * 300, "event": "E"}, "userId"),
    ("track", {"userId": "u", "event": "E", "messageId": {"a": 1}}, "messageId"),
    ("group", {"userId": "u"}, "groupId"),
    ("alias", {"userId": "u"}, "previousId"),
    ("alias", {"previousId": "p", "anonymousId": "a"}, "userId"),
    ("identify", {"type": "track", "userId": "u"}, "type"),
    ("track", {"userId": "u", "event": "E", "properties": {"a": "x\u0000y"}}, "properties.a"),
]


@pytest.mark.parametrize(("call_type", "message", "field"), BAD_SINGLE)
def test_bad_single_call_names_the_field(
    client: TestClient, cdp: OpenCDP, write_key: str, call_type: str, message: Any, field: str
) -> None:
    response = client.post(f"/v1/{call_type}", json=message, headers=basic(write_key))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert body["errors"][0]["field"] == field
    assert count_events(cdp.engine) == 0


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"userId": "u", "event": ', "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'"just a string"', "invalid_json"),
        (b'{"userId": "\xff\xfe", "event": "E"}', "invalid_encoding"),
        (b'{"userId": "u", "event": "E", "properties": {"n": NaN}}', "invalid_json"),
        (b'{"userId": "u", "event": "E", "properties": {"s": "\\ud800"}}', "invalid_json"),
    ],
)
def test_malformed_bodies(
    client: TestClient, cdp: OpenCDP, write_key: str, content: bytes, error: str
) -> None:
    response = client.post(
        "/v1/track", content=content, headers={**basic(write_key), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert count_events(cdp.engine) == 0


def test_deep_nesting_is_rejected(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    deep: Any = "bottom"
    for _ in range(40):
        deep = {"d": deep}
    response = client.post(
        "/v1/track", json={"userId": "u", "event": "E", "properties": deep}, headers=basic(write_key)
    )
    assert response.status_code == 400
    assert "deeper" in response.json()["message"]
    assert count_events(cdp.engine) == 0


def test_event_over_32kb_is_rejected(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    big = {"userId": "u", "event": "E", "properties": {"blob": "x" * (33 * 1024)}}
    response = client.post("/v1/track", json=big, headers=basic(write_key))
    assert response.status_code == 413
    assert "32768" in response.json()["message"]
    ok = {"userId": "u", "event": "E", "properties": {"blob": "x" * (30 * 1024)}}
    assert client.post("/v1/track", json=ok, headers=basic(write_key)).status_code == 200
    assert count_events(cdp.engine) == 1


def test_batch_over_500kb_is_413(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 20000}}] * 30}
    response = client.post("/v1/batch", json=batch, headers=basic(write_key))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert count_events(cdp.engine) == 0


def test_gzip_bomb_stops_at_the_limit(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    response = client.post(
        "/v1/batch", content=bomb, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(("encoding", "content", "status"), [("gzip", b"not gzip", 400), ("br", b"{}", 415)])
def test_bad_encodings(
    client: TestClient, write_key: str, encoding: str, content: bytes, status: int
) -> None:
    response = client.post(
        "/v1/batch", content=content, headers={**basic(write_key), "Content-Encoding": encoding}
    )
    assert response.status_code == status
    assert response.json()["success"] is False


def test_a_batch_with_one_bad_message_stores_nothing(
    client: TestClient, cdp: OpenCDP, write_key: str
) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Good"},
            {"type": "launch", "userId": "u"},
            {"type": "identify", "userId": "u", "traits": {"ok": True}},
            {"type": "track", "userId": "u", "messageId": "m-bad"},
            "not an object",
        ]
    }
    response = client.post("/v1/batch", json=batch, headers=basic(write_key))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_batch"
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "batch[1].type"),
        (3, "batch[3].event"),
        (4, "batch[4]"),
    ]
    assert body["errors"][1]["messageId"] == "m-bad"
    assert "nothing in this batch was stored" in body["message"]
    assert count_events(cdp.engine) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "batch"),
        ({"batch": []}, "batch"),
        ({"batch": {"a": 1}}, "batch"),
        ({"batch": [{"userId": "u", "event": "E"}]}, "batch[0].type"),
        ({"batch": [{"type": "track", "userId": "u", "event": "E"}], "sentAt": "later"}, "sentAt"),
        ({"batch": [{"type": "track", "userId": "u", "event": "E"}], "context": "web"}, "context"),
    ],
)
def test_bad_batch_envelopes(client: TestClient, cdp: OpenCDP, write_key: str, body: Any, field: str) -> None:
    response = client.post("/v1/batch", json=body, headers=basic(write_key))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_batch_context_applies_to_every_message(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    body = {
        "context": {"library": {"name": "lib"}, "app": "a"},
        "batch": [
            {"type": "track", "userId": "u", "event": "E", "context": {"app": "own"}},
            {"type": "track", "userId": "u", "event": "E"},
        ],
    }
    assert client.post("/v1/batch", json=body, headers=basic(write_key)).status_code == 200
    first, second = stored(cdp)
    assert first["payload"]["context"] == {"library": {"name": "lib"}, "app": "own"}
    assert second["payload"]["context"] == {"library": {"name": "lib"}, "app": "a"}


def test_openapi_schema_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in [
        "/v1/identify",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/import",
        "/api/events",
        "/api/sources",
    ]:
        assert path in schema["paths"], path
    assert "Track" in schema["components"]["schemas"]
    ref = schema["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in schema["components"]["schemas"]


def test_admin_api_needs_an_admin_key(client: TestClient, write_key: str, admin_key: str) -> None:
    assert client.get("/api/events").status_code == 401
    assert client.get("/api/events", headers={"Authorization": f"Bearer {write_key}"}).status_code == 401
    assert client.get("/api/events", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200


def test_admin_events_paginate_in_log_order(client: TestClient, write_key: str, admin_key: str) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(25)]}
    assert client.post("/v1/batch", json=batch, headers=basic(write_key)).status_code == 200
    seen, after = [], 0
    while True:
        page = client.get(
            "/api/events",
            params={"limit": 10, "after_id": after},
            headers={"Authorization": f"Bearer {admin_key}"},
        ).json()
        seen += [e["event"] for e in page["events"]]
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert seen == [f"E{i}" for i in range(25)]
    bad = client.get("/api/events", params={"limit": 0}, headers={"Authorization": f"Bearer {admin_key}"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "limit"
