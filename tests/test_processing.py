"""Processing in real time and with several processors side by side."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opencdp.config import Settings
from opencdp.demo.shop import ShopGenerator
from opencdp.process.processor import reset_derived_state
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, world

PINNED = datetime(2026, 11, 1, 12, tzinfo=UTC)  # the demo shop relative to a fixed moment: reproducible


def test_accepted_events_become_visible_in_the_profile_api(
    client: TestClient, cdp: OpenCDP, write_key: str, admin_key: str
) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    admin = {"Authorization": f"Bearer {admin_key}"}
    batch = {
        "batch": [
            {"type": "page", "anonymousId": "dev-1", "name": "Home"},
            {
                "type": "identify",
                "anonymousId": "dev-1",
                "userId": "live-1",
                "traits": {"email": "Live@Example.com"},
            },
            {"type": "track", "userId": "live-1", "event": "Order Completed", "properties": {"revenue": 10}},
        ]
    }
    assert client.post("/v1/batch", json=batch, headers=auth).status_code == 200
    accepted = time.monotonic()
    while True:
        response = client.get(
            "/api/profiles/lookup", params={"type": "email", "value": "live@example.com"}, headers=admin
        )
        if response.status_code == 200 and response.json()["event_counts"].get("track") == 1:
            break
        assert time.monotonic() - accepted < 5, "not processed within 5 s"
        time.sleep(0.01)
    profile = response.json()
    assert {"type": "anonymous_id", "value": "dev-1"} in profile["identifiers"]
    assert profile["traits"]["email"]["value"] == "Live@Example.com"
    assert profile["traits"]["email"]["source"] == "web"
    timeline = client.get(f"/api/profiles/{profile['id']}/events", params={"limit": 2}, headers=admin).json()
    assert [e["type"] for e in timeline["events"]] == ["track", "identify"]
    older = client.get(
        f"/api/profiles/{profile['id']}/events",
        params={"limit": 2, "before_id": timeline["next_before_id"]},
        headers=admin,
    ).json()
    assert [e["type"] for e in older["events"]] == ["page"]
    assert older["next_before_id"] is None

    # a late arrival from long ago: first by arrival, last by event time (pages keep the order)
    late = {"userId": "live-1", "event": "Catalogue Requested", "timestamp": "2020-01-01T00:00:00Z"}
    assert client.post("/v1/track", json=late, headers=auth).status_code == 200
    while (
        client.get(f"/api/profiles/{profile['id']}", headers=admin).json()["event_counts"].get("track") != 2
    ):
        assert time.monotonic() - accepted < 10, "not processed within 10 s"
        time.sleep(0.01)
    url = f"/api/profiles/{profile['id']}/events"
    arrival = client.get(url, params={"limit": 4}, headers=admin).json()["events"]
    assert arrival[0]["event"] == "Catalogue Requested"
    first = client.get(url, params={"limit": 3, "order": "time"}, headers=admin).json()
    rest = client.get(
        url, params={"limit": 3, "order": "time", "before_id": first["next_before_id"]}, headers=admin
    ).json()
    by_time = first["events"] + rest["events"]
    assert [e["id"] for e in by_time] == [
        e["id"] for e in sorted(arrival, key=lambda e: e["timestamp"], reverse=True)
    ]
    assert by_time[-1]["event"] == "Catalogue Requested" and rest["next_before_id"] is None
    assert client.get(url, params={"order": "random"}, headers=admin).status_code in (400, 422)


def test_profile_api_errors(client: TestClient, admin_key: str) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    assert client.get("/api/profiles/nope", headers=admin).status_code == 404
    missing = client.get(
        "/api/profiles/lookup", params={"type": "email", "value": "who@example.com"}, headers=admin
    )
    assert missing.status_code == 404 and "no profile" in missing.json()["message"]
    blocked = client.get(
        "/api/profiles/lookup", params={"type": "email", "value": "test@test.com"}, headers=admin
    )
    assert blocked.status_code == 404 and "blocked" in blocked.json()["message"]
    no_type = client.get("/api/profiles/lookup", params={"value": "x"}, headers=admin)
    assert no_type.status_code == 400 and no_type.json()["errors"][0]["field"] == "type"
    assert client.get("/api/profiles/lookup", params={"type": "email", "value": "x"}).status_code == 401


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_workers_give_the_profiles_of_one(
    cdp: OpenCDP, env_for: dict[str, str], settings: Settings
) -> None:
    messages = [e.message for e in ShopGenerator(customers=250, seed=11, now=PINNED).events()]
    cdp.stop()  # no in-process loop: only the workers process
    log_messages(cdp.engine, messages)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "opencdp", "worker", "--once"],
            env=env_for,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    counts = [int(out.split()[1]) for out, _ in outputs]
    assert sum(counts) == len(messages)  # every event applied exactly once, by someone
    concurrent = world(cdp.engine)
    reset_derived_state(cdp.engine)
    process(cdp.engine)
    assert world(cdp.engine) == concurrent


def test_cli_profile_commands(cdp: OpenCDP, env_for: dict[str, str]) -> None:
    log_messages(cdp.engine, [{"type": "identify", "userId": "cli-1", "traits": {"email": "c@example.com"}}])
    cdp.stop()

    def run(*args: str) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "opencdp", *args], env=env_for, capture_output=True, text=True, timeout=120
        )

    assert run("worker", "--once").stdout.startswith("processed ")  # the in-process loop may have been first
    shown = run("profiles", "get", "--type", "email", "--value", "C@example.com", "--history")
    assert shown.returncode == 0, shown.stderr
    assert '"cli-1"' in shown.stdout and "merge_history" in shown.stdout
    assert '"journeys": []' in shown.stdout
    missing = run("profiles", "get", "--type", "email", "--value", "nobody@example.com")
    assert missing.returncode == 1 and "no profile" in missing.stderr
    rebuilt = run("rebuild", "--yes")
    assert rebuilt.returncode == 0 and "rebuild complete" in rebuilt.stdout
    assert '"cli-1"' in run("profiles", "get", "--type", "user_id", "--value", "cli-1").stdout
