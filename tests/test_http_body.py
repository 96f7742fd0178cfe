"""Reading request bodies: gzip members, integer range, disconnects and slow clients (both engines)."""

from __future__ import annotations

import gzip

import orjson
from fastapi.testclient import TestClient

from opencdp.log.reader import count_events
from opencdp.system import OpenCDP
from tests.test_collect_api import basic, stored


def _batch(user_ids: range) -> bytes:
    return orjson.dumps({"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in user_ids]})


def test_every_gzip_member_is_read(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    whole = _batch(range(40))
    cut = whole.index(b"},{", len(whole) // 2) + 2  # two members, split inside the JSON
    body = gzip.compress(whole[:cut]) + gzip.compress(whole[cut:])
    response = client.post(
        "/v1/batch", content=body, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert count_events(cdp.engine) == 40


def test_a_bomb_over_many_members_stops_at_the_total_limit(
    client: TestClient, cdp: OpenCDP, write_key: str
) -> None:
    member = gzip.compress(b" " * (400 * 1024))  # each member alone is under the 500 KB limit
    body = gzip.compress(b'{"batch": [') + member * 20 + gzip.compress(b"]}")
    response = client.post(
        "/v1/batch", content=body, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413, response.text
    assert count_events(cdp.engine) == 0


def test_trailing_garbage_after_a_gzip_member_is_400(client: TestClient, write_key: str) -> None:
    body = gzip.compress(_batch(range(2))) + b"garbage!"
    response = client.post(
        "/v1/batch", content=body, headers={**basic(write_key), "Content-Encoding": "gzip"}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_gzip"


def test_integers_beyond_64_bits_are_refused_naming_the_field(
    client: TestClient, cdp: OpenCDP, write_key: str
) -> None:
    for big in (b"18446744073709551616", b"-9223372036854775809", b"1" * 300):
        body = (
            b'{"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"n": 1}},'
            b'{"type": "track", "userId": "12345678901234567890123", "event": "E",'
            b' "properties": {"ok": 18446744073709551615, "list": [1, ' + big + b"]}}]}"
        )
        response = client.post(
            "/v1/batch", content=body, headers={**basic(write_key), "Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["error"] == "invalid_number"
        assert [e["field"] for e in error["errors"]] == ["batch[1].properties.list[1]"]
        assert "beyond 64 bits" in error["message"] and "string" in error["message"]
    single = client.post(
        "/v1/track",
        content=b'{"userId": "u", "event": "E", "properties": {"id": 99999999999999999999}}',
        headers=basic(write_key),
    )
    assert single.status_code == 400 and single.json()["errors"][0]["field"] == "properties.id"
    assert count_events(cdp.engine) == 0


def test_integers_at_the_64_bit_edges_stay_exact(client: TestClient, cdp: OpenCDP, write_key: str) -> None:
    body = (
        b'{"userId": "u", "event": "E", "properties":'
        b' {"max": 18446744073709551615, "min": -9223372036854775808, "id": "99999999999999999999"}}'
    )
    assert client.post("/v1/track", content=body, headers=basic(write_key)).status_code == 200
    [event] = stored(cdp)
    assert event["payload"]["properties"] == {
        "max": 18446744073709551615,
        "min": -9223372036854775808,
        "id": "99999999999999999999",
    }
