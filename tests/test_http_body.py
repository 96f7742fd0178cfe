"""Reading request bodies: gzip members, integer range, disconnects and slow clients (both engines)."""

from __future__ import annotations

import dataclasses
import gzip
import random
import re
import time
from typing import Any

import anyio
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message
from structlog.testing import capture_logs

from opencdp import logs
from opencdp.api import body_guard, http_body
from opencdp.api.app import create_app
from opencdp.config import ConfigError, Settings
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


def test_the_long_digit_run_check_agrees_with_a_regular_expression() -> None:
    pattern = re.compile(rb"[0-9]{19,}")
    rng = random.Random(7)
    samples = [b"", b"0" * 18, b"0" * 19, b"x" + b"9" * 19 + b"x", b"1" * 18 + b".1"]
    samples += [
        bytes(rng.choice(b"0123456789999-. a\xff") for _ in range(rng.randint(0, 60))) for _ in range(3000)
    ]
    for sample in samples:
        assert http_body._has_long_digit_run(sample) == bool(pattern.search(sample)), sample


def _asgi_post(
    app: Any, path: str, headers: dict[str, str], chunks: list[Message], stall: bool
) -> tuple[list[Message], float]:
    """Drive the ASGI app directly: the client sends `chunks`, then stalls or says nothing more."""
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        if stall:
            await anyio.sleep_forever()
        raise AssertionError("the app read past the end of the exchange")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.9", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def main() -> float:
        started = time.monotonic()
        with anyio.fail_after(10):
            await app(scope, receive, send)
        return time.monotonic() - started

    return sent, anyio.run(main)


@pytest.fixture
def quick_app(cdp: OpenCDP, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(body_guard, "log", logs.get("opencdp.http"))  # not a proxy cached elsewhere
    return create_app(replace_settings(cdp, body_timeout_seconds=0.3))


def replace_settings(cdp: OpenCDP, **changes: Any) -> OpenCDP:
    cdp.settings = dataclasses.replace(cdp.settings, **changes)
    return cdp


def test_a_stalled_body_gets_408_quickly(quick_app: Any, cdp: OpenCDP, write_key: str) -> None:
    first = {"type": "http.request", "body": _batch(range(3))[:20], "more_body": True}
    headers = {**basic(write_key), "content-type": "application/json", "content-length": "5000"}
    with capture_logs() as logged:
        sent, elapsed = _asgi_post(quick_app, "/v1/batch", headers, [first], stall=True)
    assert elapsed < 5
    start, body = sent[0], sent[1]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    answer = orjson.loads(body["body"])
    assert answer["error"] == "body_timeout" and "OPENCDP_BODY_TIMEOUT_SECONDS" in answer["message"]
    assert len(sent) == 2  # nothing else after the 408
    assert [e["event"] for e in logged] == ["request body too slow; answered 408"]
    assert count_events(cdp.engine) == 0


def test_a_body_dripping_in_still_has_one_deadline(quick_app: Any, write_key: str) -> None:
    drip = [{"type": "http.request", "body": b"{", "more_body": True}] * 10_000
    sent, elapsed = _asgi_post(quick_app, "/v1/batch", basic(write_key), drip[:], stall=True)
    assert sent == [] or sent[0]["status"] in (400, 408)  # either way it ended, and quickly
    assert elapsed < 5


@pytest.mark.parametrize("path", ["/v1/batch", "/login"])
def test_a_client_leaving_mid_body_is_one_quiet_log_line(quick_app: Any, write_key: str, path: str) -> None:
    headers = {**basic(write_key), "content-type": "application/x-www-form-urlencoded"}
    chunks: list[Message] = [
        {"type": "http.request", "body": b"email=a%40b.c&pass", "more_body": True},
        {"type": "http.disconnect"},
    ]
    with capture_logs() as logged:
        sent, _ = _asgi_post(quick_app, path, headers, chunks, stall=False)  # raises if the app raised
    assert not [m for m in sent if m.get("status", 0) >= 500]
    assert [e["event"] for e in logged] == ["client went away while sending the request body"]
    assert all("exc_info" not in e for e in logged)


def test_body_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCDP_BODY_TIMEOUT_SECONDS", "2.5")
    assert Settings.from_env().body_timeout_seconds == 2.5
    monkeypatch.setenv("OPENCDP_BODY_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="OPENCDP_BODY_TIMEOUT_SECONDS"):
        Settings.from_env()


def test_processing_chunk_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCDP_PROCESS_CHUNK_SIZE", "0")  # would process nothing, silently
    with pytest.raises(ConfigError, match="OPENCDP_PROCESS_CHUNK_SIZE must be at least 1"):
        Settings.from_env()
    monkeypatch.setenv("OPENCDP_PROCESS_CHUNK_SIZE", "200")
    monkeypatch.setenv("OPENCDP_PROCESS_MAX_HOLD_SECONDS", "-1")
    with pytest.raises(ConfigError, match="OPENCDP_PROCESS_MAX_HOLD_SECONDS"):
        Settings.from_env()
    monkeypatch.setenv("OPENCDP_PROCESS_MAX_HOLD_SECONDS", "0.5")
    settings = Settings.from_env()
    assert (settings.process_chunk_size, settings.process_max_hold_seconds) == (200, 0.5)
