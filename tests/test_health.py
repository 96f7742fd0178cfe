"""/api/health tells the truth: degraded, with the reason, when the log cannot be written (disk
full) or processing has fallen behind (stalled, failing, or no worker running)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from opencdp.api.app import create_app
from opencdp.collect.messages import Envelope, Limits, normalise
from opencdp.config import Settings
from opencdp.log.append import LogAppender
from opencdp.store.schema import events
from opencdp.system import OpenCDP
from tests.identity_helpers import RULES, process, source_id


def test_healthy_system_says_ok(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["reasons"] == []
    assert body["processing"] == {
        "events_waiting": 0,
        "lag_seconds": 0.0,
        "checkpoint": 0,
        "profiles_waiting": 0,
        "events_per_second": None,  # one health check: no rate yet
    }


def test_processing_that_falls_behind_is_reported(settings: Settings) -> None:
    cdp = OpenCDP(settings, process=False)  # collection only, and no worker running
    cdp.start()
    try:
        sid = source_id(cdp.engine)
        received = datetime.now(UTC) - timedelta(minutes=5)
        rows = [
            normalise({"type": "track", "userId": f"u{i}", "event": "E"}, Envelope(received), sid, Limits())
            for i in range(3)
        ]
        LogAppender.for_engine(cdp.engine, RULES).append_committed(cdp.engine, rows)
        with TestClient(create_app(cdp)) as api:
            body = api.get("/api/health").json()
            assert body["status"] == "degraded"
            assert body["processing"]["events_waiting"] == 3 and body["processing"]["lag_seconds"] >= 299
            assert "processing is 30" in body["reasons"][0] and "opencdp worker" in body["reasons"][0]
            process(cdp.engine)
            assert api.get("/api/health").json()["status"] == "ok"
    finally:
        cdp.stop()
        cdp.engine.dispose()


def test_a_full_disk_is_reported_and_loses_nothing_accepted(cdp: OpenCDP, write_key: str) -> None:
    if cdp.engine.dialect.name != "sqlite":
        pytest.skip("fills the embedded database's 'disk' with SQLite's max_page_count")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}

    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    with cdp.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    cdp.engine.dispose()
    sa.event.listen(cdp.engine, "connect", cap)
    accepted: list[str] = []
    with TestClient(create_app(cdp)) as api:
        for i in range(200):
            big = {"type": "track", "userId": f"u{i}", "event": "E", "properties": {"pad": "x" * 3000}}
            response = api.post("/v1/track", json=big, headers=auth)
            if response.status_code != 200:
                assert response.status_code == 503 and response.headers["retry-after"]
                break
            accepted.append(f"u{i}")
        else:
            pytest.fail("the capped database never filled up")
        body = api.get("/api/health").json()
        assert body["status"] == "degraded"
        assert any("the event log cannot be written" in r and "full" in r for r in body["reasons"]), body
        sa.event.remove(cdp.engine, "connect", cap)
        cdp.engine.dispose()  # room again: the next write succeeds and health recovers
        assert api.post("/v1/track", json={"userId": "after", "event": "E"}, headers=auth).status_code == 200
        assert "cannot be written" not in str(api.get("/api/health").json()["reasons"])
    with cdp.engine.connect() as conn:
        stored = {r[0] for r in conn.execute(sa.select(events.c.user_id))}
    assert set(accepted) <= stored
